package peers.kstreams;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

import java.io.IOException;

/** Jackson-backed serdes: JSON trees for events and outputs, a POJO for consent. */
final class JsonSerde {
    static final ObjectMapper MAPPER = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    private JsonSerde() {}

    static <T> Serde<T> of(Class<T> type) {
        Serializer<T> ser = (topic, value) -> {
            if (value == null) return null;
            try {
                return MAPPER.writeValueAsBytes(value);
            } catch (IOException e) {
                throw new SerializationException("cannot encode " + type.getSimpleName(), e);
            }
        };
        Deserializer<T> de = (topic, bytes) -> {
            if (bytes == null) return null;
            try {
                return MAPPER.readValue(bytes, type);
            } catch (IOException e) {
                // no record content in the message (G6)
                throw new SerializationException("cannot decode " + type.getSimpleName() + " from " + topic);
            }
        };
        return Serdes.serdeFrom(ser, de);
    }

    static Serde<JsonNode> tree() {
        Serializer<JsonNode> ser = (topic, value) -> {
            if (value == null) return null;
            try {
                return MAPPER.writeValueAsBytes(value);
            } catch (IOException e) {
                throw new SerializationException("cannot encode JSON", e);
            }
        };
        Deserializer<JsonNode> de = (topic, bytes) -> {
            if (bytes == null) return null;
            try {
                return MAPPER.readTree(bytes);
            } catch (IOException e) {
                throw new SerializationException("cannot decode JSON from " + topic);
            }
        };
        return Serdes.serdeFrom(ser, de);
    }
}
