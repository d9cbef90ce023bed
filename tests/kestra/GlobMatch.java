// Asks the JVM's own glob matcher (the one Kestra's PathMatcherPredicate uses):
// each stdin line is "<glob>\t<path>", each output line "true", "false" or "error".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.FileSystems;
import java.nio.file.Path;

public class GlobMatch {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            String[] parts = line.split("\t", 2);
            try {
                boolean hit = FileSystems.getDefault().getPathMatcher("glob:" + parts[0]).matches(Path.of(parts[1]));
                System.out.println(hit);
            } catch (RuntimeException e) {
                System.out.println("error");
            }
        }
    }
}
