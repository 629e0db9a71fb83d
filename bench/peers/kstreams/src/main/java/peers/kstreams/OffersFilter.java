package peers.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.Map;

/**
 * The `offers` engine of the default policy (CONTRACT §5, §8): first party,
 * needs purpose `personalization`, may receive `browsing` and
 * `purchase_history`, any jurisdiction, no transforms.
 *
 * {@link #apply} returns the filtered record, or null when the event is dropped
 * (drops are not recorded by this peer).
 */
final class OffersFilter {
    static final String PURPOSE = "personalization";
    /** browsing fields at the top level of an event; plus context.referrer. */
    static final String[] BROWSING = {"url", "title", "query", "product_id", "category", "price", "quantity"};
    static final String[] PURCHASE_HISTORY = {"order_id", "items", "total", "currency"};
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private final String policyVersion;

    OffersFilter(String policyVersion) {
        this.policyVersion = policyVersion;
    }

    /** Value-level merge for the consent table: greatest updated_at wins, ties to the later record. */
    static Consent lastWriterWins(String key, Consent incoming, Consent current) {
        if (incoming == Consent.TOMBSTONE) return null; // returning null deletes the key from the table
        if (current == null || incoming.updatedAt >= current.updatedAt) return incoming;
        return current;
    }

    ObjectNode apply(JsonNode event, Consent c, long now) {
        if (event == null || !event.isObject() || c == null) return null;
        JsonNode subject = event.get("subject_id");
        if (subject == null || !subject.isTextual()) return null;          // anonymous
        JsonNode tsNode = event.get("ts");
        if (tsNode == null || !tsNode.canConvertToExactIntegral()) return null;
        long ts = tsNode.asLong();
        Map<String, Consent.Purpose> purposes = c.purposes;
        Consent.Purpose p = purposes == null ? null : purposes.get(PURPOSE);
        if (p == null || !"granted".equals(p.status)) return null;        // purpose_denied
        if (p.grantedAt == null || p.grantedAt > ts) return null;          // before_grant
        if (p.expiresAt != null && !(now < p.expiresAt && ts < p.expiresAt)) return null; // expired
        boolean browsing = c.grants("browsing");
        boolean purchases = c.grants("purchase_history");
        if (!browsing && !purchases) return null;                           // nothing_permitted

        ObjectNode out = NODES.objectNode();
        out.set("event_id", event.get("event_id"));
        out.set("subject_id", subject);
        out.set("event_type", event.get("event_type"));
        out.set("ts", tsNode);
        int kept = 0;
        if (browsing) {
            kept += copy(event, out, BROWSING);
            JsonNode ctx = event.get("context");
            JsonNode ref = ctx == null ? null : ctx.get("referrer");
            if (ref != null && !ref.isNull()) {
                out.putObject("context").set("referrer", ref);
                kept++;
            }
        }
        if (purchases) kept += copy(event, out, PURCHASE_HISTORY);
        if (kept == 0) return null;                                         // nothing_permitted
        out.put("consent_version", c.updatedAt);
        out.put("policy_version", policyVersion);
        out.putArray("purposes").add(PURPOSE);
        return out;
    }

    private static int copy(JsonNode event, ObjectNode out, String[] fields) {
        int n = 0;
        for (String f : fields) {
            JsonNode v = event.get(f);
            if (v != null && !v.isNull()) {
                out.set(f, v);
                n++;
            }
        }
        return n;
    }
}
