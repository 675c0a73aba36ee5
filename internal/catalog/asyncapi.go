package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/compliance"
)

// AvroSchemaFormat is the AsyncAPI schemaFormat of the Avro schemas in the document.
const AvroSchemaFormat = "application/vnd.apache.avro+json;version=1.9.0"

// TopicSchema is the Avro value schema of one topic: as registered when a schema registry is
// configured and holds it, else as walhook derives it (what it registers on first write).
type TopicSchema struct {
	Topic  string `json:"topic"`
	Schema string `json:"schema"`
	// Subject, ID and Version locate it in the registry; empty without a registry or when it is
	// not registered yet (the stage has not written the topic).
	Subject    string `json:"subject,omitempty"`
	ID         int    `json:"id,omitempty"`
	Version    int    `json:"version,omitempty"`
	Registered bool   `json:"registered"`
}

// Topics are the Avro value schemas of the snapshot and compliance topics of each root.
type Topics struct {
	Snapshot           map[string]TopicSchema // by root table
	ComplianceLog      map[string]TopicSchema
	ComplianceLatest   map[string]TopicSchema
	registryConfigured bool
}

// TopicSchemas derives every topic's schema and, with a schema registry, replaces each by the
// registered latest version of its subject.
func TopicSchemas(ctx context.Context, cfg *config.Config, cols map[string]map[string][]compliance.Column) (*Topics, error) {
	cfg.Compliance.SetDefaults(cfg.Kafka)
	t := &Topics{Snapshot: map[string]TopicSchema{}, ComplianceLog: map[string]TopicSchema{}, ComplianceLatest: map[string]TopicSchema{}}
	client, err := kafkaconn.SchemaRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	t.registryConfigured = client != nil
	snapSchema, err := avro.ParseSchema(avro.SnapshotSchema())
	if err != nil {
		return nil, err
	}
	for _, r := range cfg.Model.Roots {
		topic := cfg.Kafka.SnapshotTopic(r)
		ts := TopicSchema{Topic: topic, Schema: avro.SnapshotSchema()}
		if err := registered(ctx, client, avro.Subject(topic, snapSchema), &ts); err != nil {
			return nil, err
		}
		t.Snapshot[r.Table] = ts
	}
	for _, r := range cfg.Compliance.SelectRoots(&cfg.Model) {
		derived, err := compliance.ValueSchemas(cfg, r, cols[r.Table])
		if err != nil {
			return nil, err
		}
		for _, x := range []struct {
			topic, schema string
			into          map[string]TopicSchema
		}{
			{cfg.Compliance.Log.Topic(cfg.Kafka, *r), derived.Log, t.ComplianceLog},
			{cfg.Compliance.Latest.Topic(cfg.Kafka, *r), derived.Latest, t.ComplianceLatest},
		} {
			ts := TopicSchema{Topic: x.topic, Schema: x.schema}
			if err := registered(ctx, client, compliance.Subject(x.topic), &ts); err != nil {
				return nil, err
			}
			x.into[r.Table] = ts
		}
	}
	return t, nil
}

func registered(ctx context.Context, c *sr.Client, subject string, ts *TopicSchema) error {
	if c == nil {
		return nil
	}
	ss, err := c.SchemaByVersion(ctx, subject, -1)
	var re *sr.ResponseError
	if errors.As(err, &re) && (re.ErrorCode == 40401 || re.ErrorCode == 40402) {
		ts.Subject = subject
		return nil // not registered yet: the derived schema is what will be
	}
	if err != nil {
		return fmt.Errorf("catalog: schema registry: subject %s: %w", subject, err)
	}
	ts.Subject, ts.ID, ts.Version, ts.Schema, ts.Registered = subject, ss.ID, ss.Version, ss.Schema.Schema, true
	return nil
}

// Webhook request headers, as the sink sets them (sinks/webhook/delivery.go).
func webhookHeaders(eventType string) Schema {
	str := func(desc string) Schema { return Schema{"type": "string", "description": desc} }
	return Schema{"type": "object", "required": []string{"webhook-id", "webhook-timestamp", "webhook-signature",
		"walhook-event-type", "walhook-version", "walhook-attempt", "content-type"},
		"properties": map[string]any{
			"webhook-id": Schema{"type": "string", "pattern": "^msg_[a-z2-7]{26}$",
				"description": "stable per (subscription, root, version): the same on every retry, re-trigger and replay; use it to deduplicate"},
			"webhook-timestamp": Schema{"type": "string", "pattern": "^[0-9]+$", "description": "Unix seconds when this attempt was signed"},
			"webhook-signature": Schema{"type": "string", "pattern": `^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$`,
				"description": "Standard Webhooks: space-separated v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\"> per valid secret (two during a secret rotation's grace period)"},
			"walhook-event-type": Schema{"const": eventType},
			"walhook-version":    Schema{"type": "string", "pattern": "^[1-9][0-9]*$", "description": "the root's version: 1, 2, 3… per root, no gap; drop a version older than one you have"},
			"walhook-attempt":    Schema{"type": "string", "pattern": "^[1-9][0-9]*$", "description": "1 for the first attempt"},
			"content-type":       Schema{"const": "application/json"},
			"user-agent":         str("walhook/<version>"),
			"traceparent":        str("W3C trace context, when tracing is on"),
		}}
}

// snapshotHeaders are the headers of snapshot and compliance records (sinks/compliance headers).
func snapshotHeaders() Schema {
	return Schema{"type": "object", "required": []string{"walhook-event-type", "walhook-version", "walhook-tenant"},
		"properties": map[string]any{
			"walhook-event-type": Schema{"type": "string", "description": "incident_instance_updated"},
			"walhook-version":    Schema{"type": "string", "pattern": "^[1-9][0-9]*$", "description": "the snapshot's version, decimal"},
			"walhook-tenant":     Schema{"type": "string", "description": "the root's tenant"},
		}}
}

// consumerSettings are what a consumer of a topic written in Kafka transactions must set.
var consumerSettings = map[string]any{
	"isolation.level":   "read_committed",
	"auto.offset.reset": "earliest",
	"description": "Written in Kafka transactions: read with isolation.level=read_committed, or aborted records " +
		"(which walhook writes again) are read too. Records of one root share a partition (keyed by the root key), in version order.",
}

// AsyncAPI is the AsyncAPI 3.0.0 document of cfg's events: a webhook channel and operation per
// event type with its bare and envelope messages, and a Kafka channel per snapshot and
// compliance topic with its Avro messages.
func AsyncAPI(cfg *config.Config, version string, events []EventType, topics *Topics) (map[string]any, error) {
	channels, operations, messages := map[string]any{}, map[string]any{}, map[string]any{}
	for _, et := range events {
		ch := "webhook_" + et.Type
		refs := map[string]any{}
		var opMsgs []any
		for _, f := range Formats {
			name := et.Type + "_" + f
			refs[f] = Schema{"$ref": "#/components/messages/" + name}
			opMsgs = append(opMsgs, Schema{"$ref": "#/channels/" + ch + "/messages/" + f})
			payload := et.Schemas[f]
			messages[name] = map[string]any{
				"name": name, "title": et.Event + " (" + f + ")", "contentType": "application/json",
				"summary": fmt.Sprintf("the request body of a subscription to %s with format %s", et.Event, f),
				"headers": webhookHeaders(et.Type),
				"payload": Schema{"schemaFormat": "application/schema+json;version=draft-2020-12", "schema": payload},
			}
		}
		channels[ch] = map[string]any{
			"address":     nil,
			"title":       et.Event + " webhook",
			"description": et.Description + " Delivered to the URL of each enabled subscription of the root's tenant to this event (either spelling), signed per Standard Webhooks.",
			"messages":    refs,
		}
		operations["deliver_"+et.Type] = map[string]any{
			"action":   "send",
			"channel":  Schema{"$ref": "#/channels/" + ch},
			"summary":  "walhook sends " + et.Event + " to each subscribed endpoint (POST by default, PUT or PATCH per subscription); any 2xx acknowledges, 410 disables the subscription, anything else is retried with backoff and then dead-lettered",
			"messages": opMsgs,
			"bindings": map[string]any{"http": map[string]any{"method": "POST", "bindingVersion": "0.3.0"}},
		}
	}
	addTopic := func(kind, table string, ts TopicSchema, summary string, keyDesc string, headers Schema, compacted bool) {
		name := kind + "_" + strings.NewReplacer(".", "_", "-", "_").Replace(table)
		var avroSchema any
		if err := json.Unmarshal([]byte(ts.Schema), &avroSchema); err != nil {
			avroSchema = ts.Schema
		}
		msg := map[string]any{
			"name": name, "title": ts.Topic, "summary": summary, "contentType": "application/octet-stream",
			"payload":          Schema{"schemaFormat": AvroSchemaFormat, "schema": avroSchema},
			"bindings":         map[string]any{"kafka": kafkaMessageBinding(topics.registryConfigured, keyDesc)},
			"x-walhook-schema": map[string]any{"subject": ts.Subject, "id": ts.ID, "version": ts.Version, "registered": ts.Registered},
		}
		if headers != nil {
			msg["headers"] = headers
		}
		messages[name] = msg
		cleanup := "delete"
		if compacted {
			cleanup = "compact"
		}
		channels[name] = map[string]any{
			"address": ts.Topic, "title": ts.Topic, "description": summary,
			"servers":  []any{Schema{"$ref": "#/servers/kafka"}},
			"messages": map[string]any{"record": Schema{"$ref": "#/components/messages/" + name}},
			"bindings": map[string]any{"kafka": map[string]any{"topic": ts.Topic, "partitions": int(cfg.Kafka.Partitions),
				"topicConfiguration": map[string]any{"cleanup.policy": []any{cleanup}}, "bindingVersion": "0.5.0"}},
			"x-walhook-consumer": consumerSettings,
		}
		operations["write_"+name] = map[string]any{
			"action": "send", "channel": Schema{"$ref": "#/channels/" + name},
			"summary":  "walhook writes " + ts.Topic + "; consume it with isolation.level=read_committed",
			"messages": []any{Schema{"$ref": "#/channels/" + name + "/messages/record"}},
		}
	}
	for _, r := range cfg.Model.Roots {
		addTopic("snapshots", r.Table, topics.Snapshot[r.Table],
			"Every version of every "+r.Table+" root: one record per root per source transaction, value walhook.Snapshot whose payload is the exact JSON body of the bare webhook (its schema is the event type's bare schema).",
			"the text of the root's key", snapshotHeaders(), false)
	}
	for _, r := range cfg.Compliance.SelectRoots(&cfg.Model) {
		if ts, ok := topics.ComplianceLog[r.Table]; ok {
			addTopic("compliance", r.Table, ts, "Every version of every "+r.Table+" root, typed (append-only).", "the text of the root's key", snapshotHeaders(), false)
		}
		if ts, ok := topics.ComplianceLatest[r.Table]; ok {
			addTopic("compliance_latest", r.Table, ts, "The latest version of each "+r.Table+" root (compacted; with compliance.tombstone_deleted, a deleted root's version is followed by a tombstone, a record without value).", "the text of the root's key", snapshotHeaders(), true)
		}
	}
	doc := map[string]any{
		"asyncapi": "3.0.0",
		"info": map[string]any{
			"title":   "walhook events",
			"version": version,
			"description": "The events walhook publishes from PostgreSQL: signed webhooks to subscribed endpoints, " +
				"and the Kafka topics downstream systems can consume directly. Payloads are complete snapshots of a root " +
				"object, versioned 1, 2, 3… per root; tenant and soft-delete columns never appear in a webhook payload.",
		},
		"servers": map[string]any{
			"kafka": map[string]any{"host": strings.Join(cfg.Kafka.Brokers, ","), "protocol": "kafka",
				"description": "the Kafka cluster walhook writes (kafka.brokers)"},
		},
		"channels":   channels,
		"operations": operations,
		"components": map[string]any{"messages": messages},
	}
	return doc, nil
}

func kafkaMessageBinding(registry bool, keyDesc string) map[string]any {
	b := map[string]any{"key": Schema{"type": "string", "description": keyDesc}, "bindingVersion": "0.5.0"}
	if registry {
		b["schemaIdLocation"] = "payload"
		b["schemaIdPayloadEncoding"] = "confluent"
		b["schemaLookupStrategy"] = "TopicRecordNameStrategy (snapshots: <topic>-walhook.Snapshot); TopicNameStrategy (compliance: <topic>-value)"
	} else {
		b["schemaIdLocation"] = "payload"
		b["schemaIdPayloadEncoding"] = "avro-single-object (0xC3 0x01, 8-byte little-endian CRC-64-AVRO fingerprint; schemas in the <prefix>schemas topic keyed by the fingerprint in hex)"
	}
	return b
}
