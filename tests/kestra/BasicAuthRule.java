// Kestra 1.3's basic-auth rule, run by the JVM: the patterns and checks of
// webserver/src/main/java/io/kestra/webserver/services/BasicAuthService.java (save), copied
// as they are. Each stdin line is "<base64 username>\t<base64 password>" ("-" for null);
// each output line the messages save() would throw, joined by "|", or "" when it stores the pair.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Pattern;

public class BasicAuthRule {
    private static final Pattern EMAIL_PATTERN = Pattern.compile("^[a-zA-Z0-9_!#$%&'*+/=?`{|}~^.-]+@[a-zA-Z0-9.-]+$");
    private static final Pattern PASSWORD_PATTERN = Pattern.compile("(?=.{8,})(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9]).*");
    private static final int EMAIL_PASSWORD_MAX_LEN = 256;

    static String decode(String field) {
        return field.equals("-") ? null : new String(Base64.getDecoder().decode(field), StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] parts = line.split("\t", 2);
            String username = decode(parts[0]);
            String password = decode(parts[1]);
            List<String> validationErrors = new ArrayList<>();
            if (username != null && !EMAIL_PATTERN.matcher(username).matches()) {
                validationErrors.add("Invalid username for Basic Authentication. Please provide a valid email address.");
            }
            if (username == null) {
                validationErrors.add("No user name set for Basic Authentication. Please provide a user name.");
            }
            if (password == null) {
                validationErrors.add("No password set for Basic Authentication. Please provide a password.");
            }
            if (password != null && !PASSWORD_PATTERN.matcher(password).matches()) {
                validationErrors.add("Invalid password for Basic Authentication. The password must have 8 chars, one upper, one lower and one number");
            }
            if ((username != null && username.length() > EMAIL_PASSWORD_MAX_LEN) ||
                (password != null && password.length() > EMAIL_PASSWORD_MAX_LEN)) {
                validationErrors.add("The length of email or password should not exceed 256 characters.");
            }
            System.out.println(String.join("|", validationErrors));
        }
    }
}
