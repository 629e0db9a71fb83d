package peers.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import sun.misc.Signal;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Benchmark peer: the `offers` filter as a Kafka Streams KStream-KTable join.
 *
 * <pre>
 *   consent (stream) -> mapValues(parse; null -> TOMBSTONE marker)
 *                    -> groupByKey -> aggregate(last writer wins on updated_at)  = KTable
 *   clickstream (stream) -> join(KTable, OffersFilter) -> filter(non-null) -> output topic
 * </pre>
 *
 * Options (``--name value``, ``--name=value`` or environment ``PEER_NAME``):
 * bootstrap, application-id, clickstream-topic, consent-topic, output-topic,
 * threads (num.stream.threads, default 1), idle-exit-s (stop after that many
 * seconds without input while RUNNING; 0 = never), state-dir, policy-version,
 * commit-interval-ms (default: Kafka Streams' own). processing.guarantee is at_least_once.
 * Stops cleanly on SIGTERM/SIGINT. On exit prints one JSON line with counts.
 */
public final class OffersApp {
    private static final Map<String, String> DEFAULTS = Map.of(
            "bootstrap", "127.0.0.1:9092",
            "application-id", "offers-kstreams-peer",
            "clickstream-topic", "clickstream",
            "consent-topic", "consent",
            "output-topic", "personalization.offers",
            "threads", "1",
            "idle-exit-s", "30",
            "policy-version", "default-1",
            "commit-interval-ms", "");  // empty: the Kafka Streams default (30 s for at_least_once)

    static final AtomicLong EVENTS = new AtomicLong();
    static final AtomicLong CONSENTS = new AtomicLong();
    static final AtomicLong EMITTED = new AtomicLong();
    static volatile long lastInputNanos = System.nanoTime();

    private OffersApp() {}

    static Map<String, String> options(String[] args) {
        Map<String, String> opts = new HashMap<>(DEFAULTS);
        for (String key : DEFAULTS.keySet()) {
            String env = System.getenv("PEER_" + key.toUpperCase().replace('-', '_'));
            if (env != null && !env.isEmpty()) opts.put(key, env);
        }
        String stateEnv = System.getenv("PEER_STATE_DIR");
        if (stateEnv != null && !stateEnv.isEmpty()) opts.put("state-dir", stateEnv);
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) throw new IllegalArgumentException("unexpected argument: " + a);
            String name = a.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                throw new IllegalArgumentException("option --" + name + " needs a value");
            }
            if (!DEFAULTS.containsKey(name) && !name.equals("state-dir")) {
                throw new IllegalArgumentException("unknown option --" + name + "; known: " + DEFAULTS.keySet() + " and state-dir");
            }
            opts.put(name, value);
        }
        opts.putIfAbsent("state-dir", Path.of(System.getProperty("java.io.tmpdir"),
                "kstreams-offers-peer", opts.get("application-id")).toString());
        return opts;
    }

    static Consent parseConsent(byte[] value) {
        if (value == null) return Consent.TOMBSTONE;
        try {
            Consent c = JsonSerde.MAPPER.readValue(value, Consent.class);
            return c.updatedAt == null ? null : c;
        } catch (IOException e) {
            return null; // malformed: skipped by this peer (the real filter blocks the subject)
        }
    }

    static Topology topology(Map<String, String> o) {
        Serde<String> keys = Serdes.String();
        Serde<Consent> consentSerde = JsonSerde.of(Consent.class);
        Serde<JsonNode> json = JsonSerde.tree();
        OffersFilter filter = new OffersFilter(o.get("policy-version"));
        StreamsBuilder builder = new StreamsBuilder();

        KTable<String, Consent> consent = builder
                .stream(o.get("consent-topic"), Consumed.with(keys, Serdes.ByteArray()))
                .peek((k, v) -> { CONSENTS.incrementAndGet(); lastInputNanos = System.nanoTime(); })
                .mapValues(OffersApp::parseConsent)
                .filter((k, v) -> k != null && v != null)
                .groupByKey(Grouped.with(keys, consentSerde))
                .aggregate(() -> null, OffersFilter::lastWriterWins,
                        Materialized.<String, Consent, KeyValueStore<Bytes, byte[]>>as("consent-latest")
                                .withKeySerde(keys).withValueSerde(consentSerde));

        builder.stream(o.get("clickstream-topic"), Consumed.with(keys, json))
                .peek((k, v) -> { EVENTS.incrementAndGet(); lastInputNanos = System.nanoTime(); })
                .filter((k, v) -> k != null)  // anonymous traffic has no subject key: dropped
                .join(consent, (event, c) -> filter.apply(event, c, System.currentTimeMillis()))
                .filter((k, out) -> out != null)
                .peek((k, v) -> EMITTED.incrementAndGet())
                .mapValues(v -> (JsonNode) v)
                .to(o.get("output-topic"), Produced.with(keys, json));
        return builder.build();
    }

    static Properties config(Map<String, String> o) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.get("application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.get("bootstrap"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(o.get("threads")));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.STATE_DIR_CONFIG, o.get("state-dir"));
        if (!o.get("commit-interval-ms").isEmpty()) {
            p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(o.get("commit-interval-ms")));
        }
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        return p;
    }

    public static void main(String[] args) throws InterruptedException {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel",
                System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"));
        Map<String, String> o;
        try {
            o = options(args);
        } catch (IllegalArgumentException e) {
            System.err.println("kstreams-offers-peer: " + e.getMessage());
            System.exit(2);
            return;
        }
        long idleNanos = TimeUnit.SECONDS.toNanos(Long.parseLong(o.get("idle-exit-s")));
        KafkaStreams streams = new KafkaStreams(topology(o), config(o));
        AtomicBoolean stop = new AtomicBoolean();
        CountDownLatch closed = new CountDownLatch(1);
        AtomicLong runningSince = new AtomicLong(-1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) runningSince.compareAndSet(-1, System.nanoTime());
        });
        // SIGTERM/SIGINT: leave the loop below, close Kafka Streams (commits offsets), exit 0.
        for (String sig : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(sig), s -> stop.set(true));
        }
        // any other way the JVM goes down: still close cleanly
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop.set(true);
            try {
                closed.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }, "peer-shutdown"));

        long start = System.nanoTime();
        streams.start();
        String why = "signal";
        int code = 0;
        while (!stop.get()) {
            Thread.sleep(100);
            KafkaStreams.State s = streams.state();
            if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING
                    || s == KafkaStreams.State.PENDING_ERROR) {
                why = "streams " + s;
                code = 1;
                break;
            }
            long since = runningSince.get();
            if (idleNanos > 0 && since >= 0 && s == KafkaStreams.State.RUNNING) {
                long now = System.nanoTime();
                if (now - Math.max(since, lastInputNanos) > idleNanos) {
                    why = "idle";
                    break;
                }
            }
        }
        streams.close(Duration.ofSeconds(30));
        System.out.printf("{\"peer\":\"kstreams\",\"stopped\":\"%s\",\"events\":%d,\"consent\":%d,\"emitted\":%d,\"run_s\":%.3f}%n",
                why, EVENTS.get(), CONSENTS.get(), EMITTED.get(), (System.nanoTime() - start) / 1e9);
        System.out.flush();
        closed.countDown();
        System.exit(code);
    }
}
