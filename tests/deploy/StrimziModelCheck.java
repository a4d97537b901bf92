// Checks Strimzi custom resources against Strimzi's own API model (io.strimzi:api), the classes its
// operators read them into: each resource must deserialize (types, enumerations, the `type`
// discriminators of listeners, authentication and storage), every field must be one the model
// knows (the model keeps unknown fields aside instead of failing; the operators only warn about
// them), every field the model marks required must be present, and the model must read back
// what was written (an unknown enumeration value reads as null; apiVersion as the model's own).
//
// Usage: java -cp '<strimzi api jars>' StrimziModelCheck.java RESOURCES.json
// RESOURCES.json is a JSON array of resources. Prints one line per problem ("<kind>/<name> <path>:
// <reason>") and exits 1 if there is any, else prints "checked N resources" and exits 0.
import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import java.io.File;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

public class StrimziModelCheck {
    static final Map<String, String> KINDS = Map.of(
        "Kafka", "io.strimzi.api.kafka.model.kafka.Kafka",
        "KafkaNodePool", "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
        "KafkaTopic", "io.strimzi.api.kafka.model.topic.KafkaTopic",
        "KafkaUser", "io.strimzi.api.kafka.model.user.KafkaUser");

    static final ObjectMapper MAPPER = new ObjectMapper()
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT);

    public static void main(String[] args) throws Exception {
        JsonNode all = MAPPER.readTree(new File(args[0]));
        List<String> problems = new ArrayList<>();
        for (JsonNode resource : all) {
            String kind = resource.path("kind").asText();
            String where = kind + "/" + resource.path("metadata").path("name").asText();
            String className = KINDS.get(kind);
            if (className == null) {
                problems.add(where + ": not a Strimzi kind this check knows");
                continue;
            }
            Object model;
            try {
                model = MAPPER.treeToValue(resource, Class.forName(className));
            } catch (Exception e) {
                problems.add(where + ": " + e.getMessage().split("\n")[0]);
                continue;
            }
            walk(model, resource, where, "", problems);
            compare(resource, MAPPER.valueToTree(model), where, "", problems);
        }
        problems.forEach(System.out::println);
        if (!problems.isEmpty()) {
            System.exit(1);
        }
        System.out.println("checked " + all.size() + " resources");
    }

    /** Every field of `node` must be a property of `value`'s class; every required property must be there. */
    static void walk(Object value, JsonNode node, String where, String path, List<String> problems) {
        if (value == null || node == null || node.isNull()) {
            return;
        }
        if (value instanceof List<?> list) {
            for (int i = 0; i < list.size() && i < node.size(); i++) {
                walk(list.get(i), node.get(i), where, path + "[" + i + "]", problems);
            }
            return;
        }
        String pkg = value.getClass().getPackageName();
        if (!(pkg.startsWith("io.strimzi.api") || pkg.startsWith("io.fabric8.kubernetes.api.model")) || !node.isObject()) {
            return;
        }
        JavaType type = MAPPER.constructType(value.getClass());
        BeanDescription bean = MAPPER.getSerializationConfig().introspect(type);
        Map<String, BeanPropertyDefinition> props = new HashMap<>();
        for (BeanPropertyDefinition p : bean.findProperties()) {
            props.put(p.getName(), p);
        }
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            if (!props.containsKey(field) && !isTypeDiscriminator(field, value)) {
                problems.add(where + " " + path + "." + field + ": unknown field for " + value.getClass().getSimpleName());
            }
        }
        for (BeanPropertyDefinition p : props.values()) {
            if (p.isRequired() && !node.has(p.getName())) {
                problems.add(where + " " + path + "." + p.getName() + ": required by " + value.getClass().getSimpleName());
            }
            if (node.has(p.getName()) && p.getGetter() != null) {
                Object child;
                try {
                    child = p.getGetter().getValue(value);
                } catch (Exception e) {
                    continue;
                }
                if (child instanceof Map<?, ?>) {
                    continue;  // free-form maps: labels, annotations, Kafka and topic configs
                }
                walk(child, node.get(p.getName()), where, path + "." + p.getName(), problems);
            }
        }
    }

    /** What the model reads must be what was written: an unknown enumeration value reads as null. */
    static void compare(JsonNode written, JsonNode read, String where, String path, List<String> problems) {
        if (written.isObject()) {
            for (Iterator<String> it = written.fieldNames(); it.hasNext(); ) {
                String field = it.next();
                if (read != null && read.has(field)) {
                    compare(written.get(field), read.get(field), where, path + "." + field, problems);
                }
            }
        } else if (written.isArray()) {
            for (int i = 0; i < written.size(); i++) {
                compare(written.get(i), read == null ? null : read.get(i), where, path + "[" + i + "]", problems);
            }
        } else if (read == null || !(written.equals(read) || written.asText().equals(read.asText()))) {
            problems.add(where + " " + path + ": " + written + " reads as " + read);
        }
    }

    /** `type` selects the subclass (listener authentication, storage, ...): Jackson consumed it. */
    static boolean isTypeDiscriminator(String field, Object value) {
        for (Class<?> c = value.getClass(); c != null; c = c.getSuperclass()) {
            com.fasterxml.jackson.annotation.JsonTypeInfo info = c.getAnnotation(com.fasterxml.jackson.annotation.JsonTypeInfo.class);
            if (info != null) {
                return field.equals(info.property());
            }
        }
        return false;
    }
}
