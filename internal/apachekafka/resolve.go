package apachekafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// DefaultVersion is the Apache Kafka release the harness runs unless told otherwise
// (Options.Version, WALHOOK_KAFKA_VERSION).
const DefaultVersion = "4.4.0"

// Environment variables the harness reads.
const (
	EnvCacheDir = "WALHOOK_KAFKA_CACHE"   // where resolved jars are kept
	EnvVersion  = "WALHOOK_KAFKA_VERSION" // the Kafka release to run
)

// log4jVersion is the log4j release of Kafka's own dependency tree; its slf4j binding makes the
// broker's slf4j logging reach server.log (without it Kafka's classes log nothing).
const log4jVersion = "2.25.5"

// minJava is the oldest Java that runs the Kafka 4 broker.
const minJava = 17

// MissingToolError says that Java or Maven, which the harness needs, is not installed.
type MissingToolError struct {
	Tool string // "java" or "mvn"
	msg  string
}

func (e *MissingToolError) Error() string { return e.msg }

// IsMissingTool reports whether err says that Java or Maven is missing, so a test on a developer
// machine without them can skip.
func IsMissingTool(err error) bool {
	var m *MissingToolError
	return errors.As(err, &m)
}

// Distribution is a resolved Kafka release: the jars and the java that runs them.
type Distribution struct {
	Version string
	// Dir holds libs/ (every jar of the broker's runtime classpath).
	Dir  string
	Java string
}

// Classpath is the JVM's -cp argument.
func (d *Distribution) Classpath() string { return filepath.Join(d.Dir, "libs", "*") }

// Resolve returns the distribution of version ("" means WALHOOK_KAFKA_VERSION, else
// DefaultVersion) under cacheDir ("" means WALHOOK_KAFKA_CACHE, else the user's cache
// directory), resolving it with Maven the first time. Concurrent callers (two test binaries) wait
// for one resolution through a lock file.
func Resolve(ctx context.Context, version, cacheDir string) (*Distribution, error) {
	if version == "" {
		version = os.Getenv(EnvVersion)
	}
	if version == "" {
		version = DefaultVersion
	}
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(version) {
		return nil, fmt.Errorf("apachekafka: version %q is not a Kafka release number such as %s", version, DefaultVersion)
	}
	java, err := findJava(ctx)
	if err != nil {
		return nil, err
	}
	if cacheDir == "" {
		cacheDir = os.Getenv(EnvCacheDir)
	}
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("apachekafka: no cache directory for the Kafka jars: %w; set %s", err, EnvCacheDir)
		}
		cacheDir = filepath.Join(base, "walhook", "apache-kafka")
	}
	d := &Distribution{Version: version, Dir: filepath.Join(cacheDir, version), Java: java}
	if resolved(d.Dir) {
		return d, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("apachekafka: create cache directory: %w; set %s to a writable directory", err, EnvCacheDir)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, version+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if resolved(d.Dir) { // another process resolved it while we waited for the lock
		return d, nil
	}
	if err := mavenResolve(ctx, version, d.Dir); err != nil {
		return nil, err
	}
	return d, nil
}

const completeMarker = ".complete"

func resolved(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

// mavenResolve copies kafka_2.13:version and its runtime dependencies into dir/libs. It works in a
// fresh sibling directory and renames it into place, so a killed resolution leaves nothing that
// looks complete.
func mavenResolve(ctx context.Context, version, dir string) error {
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return &MissingToolError{Tool: "mvn", msg: fmt.Sprintf("apachekafka: Maven (mvn) is not on PATH: it resolves org.apache.kafka:kafka_2.13:%s from Maven Central "+
			"into %s once; install it (apt-get install maven) or copy a resolved libs/ folder there with an empty %s file", version, dir, completeMarker)}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".resolving-")
	if err != nil {
		return fmt.Errorf("apachekafka: %w", err)
	}
	defer os.RemoveAll(tmp)
	pom := filepath.Join(tmp, "pom.xml")
	if err := os.WriteFile(pom, []byte(pomXML(version)), 0o644); err != nil {
		return fmt.Errorf("apachekafka: write pom: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory="+filepath.Join(tmp, "libs"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apachekafka: mvn could not resolve org.apache.kafka:kafka_2.13:%s: %w; check that Maven Central is reachable "+
			"(or a mirror in ~/.m2/settings.xml) and that the version exists; mvn said:\n%s", version, err, tail(out.Bytes(), 2000))
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), nil, 0o644); err != nil {
		return fmt.Errorf("apachekafka: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("apachekafka: remove incomplete %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("apachekafka: move resolved jars into %s: %w", dir, err)
	}
	return nil
}

func pomXML(version string) string {
	return `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.walhook</groupId>
  <artifactId>apache-kafka-harness</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>` + version + `</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>` + log4jVersion + `</version></dependency>
  </dependencies>
</project>
`
}

// findJava returns JAVA_HOME's java or the one on PATH, checking that it is new enough.
func findJava(ctx context.Context) (string, error) {
	java := ""
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
		if _, err := os.Stat(java); err != nil {
			return "", fmt.Errorf("apachekafka: JAVA_HOME=%s has no bin/java: point it at a JDK or JRE %d+ or unset it", home, minJava)
		}
	} else {
		var err error
		if java, err = exec.LookPath("java"); err != nil {
			return "", &MissingToolError{Tool: "java", msg: fmt.Sprintf("apachekafka: java is not on PATH: the Apache Kafka broker needs Java %d or newer; "+
				"install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME", minJava)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, java, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apachekafka: %s -version: %w: %s", java, err, tail(out, 500))
	}
	if v := javaMajor(out); v < minJava {
		return "", fmt.Errorf("apachekafka: %s is Java %d; the Apache Kafka broker needs %d or newer: set JAVA_HOME to a newer JDK", java, v, minJava)
	}
	return java, nil
}

// javaMajor parses the major version from `java -version` output (`version "17.0.15"`,
// `version "1.8.0_392"`); 0 when it cannot.
func javaMajor(out []byte) int {
	m := regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major == 1 && len(m[2]) > 0 { // 1.8 is Java 8
		major, _ = strconv.Atoi(string(m[2]))
	}
	return major
}

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("apachekafka: open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("apachekafka: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("apachekafka: waiting for another process resolving Kafka (lock %s): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
