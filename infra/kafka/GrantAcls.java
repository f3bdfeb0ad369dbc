// Grants ACLs on the local broker through Kafka's own Admin client (kafka-clients, already on
// the broker's classpath): bookify.infra.kafka runs it with Java's source launcher,
//     java -cp 'lib/*' infra/kafka/GrantAcls.java admin.properties acls.txt
// Each line of acls.txt: <principal> <resource type> <name> <pattern type> <operation>,
// e.g. "User:gateway TOPIC bookify.commands LITERAL WRITE"; every ACL allows, from any host.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class GrantAcls {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        try (var in = Files.newInputStream(Path.of(args[0]))) {
            config.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.trim().split("\\s+");
            bindings.add(new AclBinding(
                new ResourcePattern(ResourceType.fromString(f[1]), f[2], PatternType.fromString(f[3])),
                new AccessControlEntry(f[0], "*", AclOperation.fromString(f[4]), AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(config)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("granted " + bindings.size() + " ACLs");
    }
}
