package peers.kstreams;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;

import java.util.Map;

/**
 * A consent record (CONTRACT §3) as it is kept in the consent KTable.
 * Unknown properties (tcf, future fields) are ignored.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class Consent {
    @JsonProperty("subject_id") public String subjectId;
    @JsonProperty("updated_at") public Long updatedAt;
    @JsonProperty("purposes") public Map<String, Purpose> purposes;
    @JsonProperty("categories") public Map<String, Boolean> categories;
    @JsonProperty("jurisdiction") public String jurisdiction;
    @JsonProperty("gpc") public Boolean gpc;

    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Purpose {
        @JsonProperty("status") public String status;
        @JsonProperty("granted_at") public Long grantedAt;
        @JsonProperty("expires_at") public Long expiresAt;
    }

    /** Marker for a tombstone on its way into the aggregate; never stored. */
    static final Consent TOMBSTONE = new Consent();

    boolean grants(String category) {
        return categories != null && Boolean.TRUE.equals(categories.get(category));
    }
}
