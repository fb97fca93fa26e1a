// Starts Amazon's DynamoDB Local exactly as its own ServerRunner does, but bound to 127.0.0.1 only.
// DynamoDB Local has no bind-address flag and listens on every interface; a local stack must not.
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        var proxy = ServerRunner.createServerFromCommandLineArgs(args);
        var field = proxy.getClass().getDeclaredField("server");
        field.setAccessible(true);
        var server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            if (connector instanceof ServerConnector serverConnector) {
                serverConnector.setHost("127.0.0.1");
            }
        }
        proxy.start();
        proxy.join();
    }
}
