package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
)

// Opts builds the connection options of a franz-go client for cfg: seed brokers, client id,
// TLS and SASL. Stage-specific options (producer or consumer settings) are appended by the
// caller.
func Opts(cfg config.Kafka) ([]kgo.Opt, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured: set kafka.brokers or WALHOOK_BROKERS (host:port,...)")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...),
		// Every producer shares kafka.compression and kafka.max_record_bytes; a record above
		// the limit is produced as chunks (package chunked), placed by its original key. A
		// stage with a partitioner of its own wraps it in chunked.Partitioner too.
		kgo.RecordPartitioner(chunked.Partitioner(kgo.StickyKeyPartitioner(nil)))}
	opts = append(opts, ProducerOpts(cfg)...)
	if cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(cfg.ClientID))
	}
	if cfg.TLS.Enabled {
		tc, err := TLSConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.SASL.Mechanism != "" {
		m, err := saslMechanism(cfg.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// TLSConfig builds the client TLS configuration: the CA bundle (system pool when empty), an
// optional client certificate for mutual TLS and the server name override.
func TLSConfig(c config.TLS) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // opt-in, documented as never for production
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %q: no PEM certificate found: give a PEM bundle of CA certificates", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("kafka.tls: cert_file and key_file go together: set both for mutual TLS, or neither")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: load client certificate %q / key %q: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func saslMechanism(s config.SASL) (sasl.Mechanism, error) {
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			return plain.Auth{User: s.Username, Pass: s.Password}, nil
		}), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, or leave it empty for none", s.Mechanism)
	}
}

// GroupOpts are the consumer-group options of every walhook stage: GroupTimeouts(session), the
// KIP-848 protocol when kafka.group_protocol is consumer, and,
// when kafka.instance_id is set, static membership (kgo.InstanceID). A static member that
// restarts with the same id replaces its previous incarnation at once, which the group would
// otherwise hold until its session expired. It also replaces an incarnation the broker failed to
// expire: kfake keeps a member whose connection died while its JoinGroup was parked (the reply
// fails, so no session timer is ever armed) for as long as the group stays Stable.
func GroupOpts(cfg config.Kafka, session time.Duration) []kgo.Opt {
	opts := GroupTimeouts(session)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.GroupProtocol == config.GroupProtocolConsumer {
		// KIP-848 needs an eager balancer whose name the broker knows as a server-side assignor
		// (sticky = "uniform"); with franz-go's default cooperative-sticky it would stay classic.
		opts = append(opts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
	}
	return opts
}

// TransactionalID is the transactional id of a stage's group session: group + "-" + the
// instance id when kafka.instance_id is set, so a restarted process's InitProducerID aborts the
// open transaction its killed incarnation left behind (instead of that transaction holding back
// read_committed readers, and the last stable offset of the stage's changelog, until its
// transaction timeout); otherwise group + "-" + random, unique per process. random is only
// called without an instance id.
func TransactionalID(cfg config.Kafka, group string, random func() string) string {
	if cfg.InstanceID != "" {
		return group + "-" + cfg.InstanceID
	}
	return group + "-" + random()
}

// GroupTimeouts are the consumer-group timeouts of every walhook stage: a SIGKILLed member never
// leaves its group, so its partitions wait out the session timeout (franz-go's default 45 s);
// the rebalance timeout is the same bound for a live member to rejoin, and members heartbeat ten
// times per session.
func GroupTimeouts(session time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(session),
		kgo.RebalanceTimeout(session),
		kgo.HeartbeatInterval(session / 10),
	}
}
