package apachekafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/walhook/walhook/internal/maven"
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

// IsMissingTool reports whether err says that Java or Maven is missing, so a test on a developer
// machine without them can skip.
func IsMissingTool(err error) bool { return maven.IsMissingTool(err) }

// Distribution is a resolved Kafka release: the jars and the java that runs them.
type Distribution struct {
	Version string
	Libs    string // every jar of the broker's runtime classpath
	Java    string
}

// Classpath is the JVM's -cp argument.
func (d *Distribution) Classpath() string { return filepath.Join(d.Libs, "*") }

// Resolve returns the distribution of version ("" means WALHOOK_KAFKA_VERSION, else
// DefaultVersion) under cacheDir ("" means WALHOOK_KAFKA_CACHE, else the user's cache
// directory), resolving it with Maven the first time.
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
	java, err := maven.FindJava(ctx, minJava, "the Apache Kafka broker")
	if err != nil {
		return nil, fmt.Errorf("apachekafka: %w", err)
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
	libs, err := maven.Resolve(ctx, filepath.Join(cacheDir, version), "the Apache Kafka broker",
		maven.Artifact{Group: "org.apache.kafka", Name: "kafka_2.13", Version: version},
		maven.Artifact{Group: "org.apache.logging.log4j", Name: "log4j-slf4j-impl", Version: log4jVersion})
	if err != nil {
		return nil, fmt.Errorf("apachekafka: %w", err)
	}
	return &Distribution{Version: version, Libs: libs, Java: java}, nil
}
