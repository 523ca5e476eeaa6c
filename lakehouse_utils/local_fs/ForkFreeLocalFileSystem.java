package lakehouse.fs;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermissions;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FsConstants;
import org.apache.hadoop.fs.FsServerDefaults;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.local.LocalConfigKeys;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's checksummed local file system, without a process started per file or folder.
 *
 * <p>Without Hadoop's native library (pip's pyspark ships none), RawLocalFileSystem sets the mode
 * of every file and folder it creates by running {@code chmod}, and FileContext's rename asks
 * {@code readlink} whether a path is a symbolic link: about 7 ms of a forked process each, over a
 * thousand times in a small chain. This class does the same through java.nio. Everything else,
 * checksums included, is Hadoop's own. Local Spark sessions use it for {@code file:} paths
 * ({@code fs.file.impl}, and {@link Fs} for {@code fs.AbstractFileSystem.file.impl}).
 */
public class ForkFreeLocalFileSystem extends LocalFileSystem {
  public ForkFreeLocalFileSystem() {
    super(new Raw());
  }

  /** RawLocalFileSystem with its two process-starting calls done in the JVM. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path path, FsPermission permission) throws IOException {
      if (permission.getStickyBit()) {  // java.nio cannot set it, chmod can
        super.setPermission(path, permission);
        return;
      }
      // Without the sticky bit, FsPermission prints the nine `rwxr-x---` symbols java.nio parses.
      Files.setPosixFilePermissions(pathToFile(path).toPath(), PosixFilePermissions.fromString(permission.toString()));
    }

    @Override
    public FileStatus getFileLinkStatus(Path path) throws IOException {
      // Hadoop's answer for anything but a symbolic link is the path's own status.
      if (Files.isSymbolicLink(pathToFile(path).toPath())) {
        return super.getFileLinkStatus(path);
      }
      return getFileStatus(path);
    }
  }

  /** The same file system for FileContext (streaming checkpoints), checksummed like Hadoop's LocalFs. */
  public static class Fs extends ChecksumFs {
    public Fs(Configuration conf) throws IOException, URISyntaxException {
      this(FsConstants.LOCAL_FS_URI, conf);
    }

    public Fs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(new RawFs(uri, conf));
    }
  }

  /** Hadoop's RawLocalFs (its constructors are package-private) over {@link Raw}. */
  static class RawFs extends DelegateToFileSystem {
    RawFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(uri, new Raw(), conf, FsConstants.LOCAL_FS_URI.getScheme(), false);
    }

    @Override
    public int getUriDefaultPort() {
      return -1;
    }

    @Override
    public FsServerDefaults getServerDefaults(Path path) throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    @Deprecated
    public FsServerDefaults getServerDefaults() throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    public boolean isValidName(String src) {
      return true;  // local paths may hold ':' and other names HDFS refuses
    }
  }
}
