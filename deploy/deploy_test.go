package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/webhook"
)

// walhookCommands are the subcommands of the walhook binary that a manifest may run. The binary's
// root command lives in package main, so the list is kept here: when a subcommand is renamed,
// update it (and the manifests).
var walhookCommands = []string{"cdc", "bubbleup", "deliver", "comply", "status", "hooks", "tail", "config", "version", "dev"}

// The overlays and what each must look like.
var overlays = []string{"base", "overlays/dev", "overlays/prod"}

// ServiceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the manifests use;
// decoding is strict, so a field outside it fails the test.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// KafkaTopic is the part of kafka.strimzi.io/v1beta2 KafkaTopic the manifests use.
type KafkaTopic struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		TopicName  string            `json:"topicName"`
		Partitions int32             `json:"partitions"`
		Replicas   int32             `json:"replicas,omitempty"`
		Config     map[string]string `json:"config"`
	} `json:"spec"`
}

// rendered is one overlay's output, decoded.
type rendered struct {
	name        string
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs        map[string]*policyv1.PodDisruptionBudget
	netpols     map[string]*networkingv1.NetworkPolicy
	monitors    map[string]*ServiceMonitor
	topics      map[string]*KafkaTopic // by spec.topicName
	accounts    map[string]*corev1.ServiceAccount
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("k8s", dir))
	if err != nil {
		t.Fatalf("kustomize build deploy/k8s/%s: %v", dir, err)
	}
	r := &rendered{name: dir, deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, monitors: map[string]*ServiceMonitor{},
		topics: map[string]*KafkaTopic{}, accounts: map[string]*corev1.ServiceAccount{}}
	for _, res := range rm.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, res.CurId(), err)
		}
		gvk := res.GetGvk()
		what := fmt.Sprintf("%s: %s/%s %s", dir, gvk.Group, gvk.Kind, res.GetName())
		switch gvk.ApiVersion() + " " + gvk.Kind {
		case "apps/v1 Deployment":
			r.deployments[res.GetName()] = decode[appsv1.Deployment](t, what, data)
		case "v1 Service":
			r.services[res.GetName()] = decode[corev1.Service](t, what, data)
		case "v1 ConfigMap":
			r.configMaps[res.GetName()] = decode[corev1.ConfigMap](t, what, data)
		case "v1 Secret":
			r.secrets[res.GetName()] = decode[corev1.Secret](t, what, data)
		case "v1 ServiceAccount":
			r.accounts[res.GetName()] = decode[corev1.ServiceAccount](t, what, data)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			r.hpas[res.GetName()] = decode[autoscalingv2.HorizontalPodAutoscaler](t, what, data)
		case "policy/v1 PodDisruptionBudget":
			r.pdbs[res.GetName()] = decode[policyv1.PodDisruptionBudget](t, what, data)
		case "networking.k8s.io/v1 NetworkPolicy":
			r.netpols[res.GetName()] = decode[networkingv1.NetworkPolicy](t, what, data)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.monitors[res.GetName()] = decode[ServiceMonitor](t, what, data)
		case "kafka.strimzi.io/v1beta2 KafkaTopic":
			kt := decode[KafkaTopic](t, what, data)
			if _, dup := r.topics[kt.Spec.TopicName]; dup {
				t.Errorf("%s: topic %s declared twice", what, kt.Spec.TopicName)
			}
			r.topics[kt.Spec.TopicName] = kt
		default:
			t.Errorf("%s: kind not checked by this test; add a strict decode for it", what)
		}
	}
	return r
}

// decode unmarshals data into a T, case-sensitively, failing on unknown or duplicate fields.
func decode[T any](t *testing.T, what string, data []byte) *T {
	t.Helper()
	var v T
	strict, err := kjson.UnmarshalStrict(data, &v, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, e := range strict {
		t.Errorf("%s: %v", what, e)
	}
	return &v
}

func renderAll(t *testing.T) map[string]*rendered {
	t.Helper()
	out := map[string]*rendered{}
	for _, o := range overlays {
		out[o] = render(t, o)
	}
	return out
}

var stages = []string{"cdc", "bubbleup", "deliver", "compliance"}

func TestManifestsDecodeStrictlyAndHoldInvariants(t *testing.T) {
	for name, r := range renderAll(t) {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			for _, s := range stages {
				d := r.deployments["walhook-"+s]
				if d == nil {
					t.Fatalf("no Deployment walhook-%s", s)
				}
				checkDeployment(t, r, d)
				if svc := r.services["walhook-"+s]; svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9464 ||
					svc.Spec.Selector["app.kubernetes.io/component"] != s {
					t.Errorf("Service walhook-%s: want one port 9464 selecting component %s, got %+v", s, s, svc)
				}
				if r.pdbs["walhook-"+s] == nil {
					t.Errorf("no PodDisruptionBudget walhook-%s", s)
				}
			}
			if len(r.deployments) != len(stages) {
				t.Errorf("%d Deployments, want %d (one per stage)", len(r.deployments), len(stages))
			}
			for _, s := range []string{"bubbleup", "deliver"} {
				h := r.hpas["walhook-"+s]
				if h == nil || h.Spec.ScaleTargetRef.Name != "walhook-"+s || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
					t.Errorf("HorizontalPodAutoscaler walhook-%s: %+v", s, h)
				}
			}
			checkServiceMonitor(t, r)
			checkNetworkPolicy(t, r)
		})
	}
}

func checkDeployment(t *testing.T, r *rendered, d *appsv1.Deployment) {
	t.Helper()
	p := d.Spec.Template.Spec
	if len(p.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", d.Name, len(p.Containers))
	}
	c := p.Containers[0]
	if len(c.Args) == 0 || !slices.Contains(walhookCommands, c.Args[0]) {
		t.Errorf("%s: args %v do not start with a walhook subcommand (%v)", d.Name, c.Args, walhookCommands)
	}
	if r.name != "base" && (!strings.Contains(c.Image, "/") || !strings.Contains(c.Image, ":")) {
		t.Errorf("%s: image %q is not a registry image with a tag; set images: in the overlay", d.Name, c.Image)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s: %s probe must GET %s on port metrics, got %+v", d.Name, pr.name, pr.path, pr.probe)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("%s: want container port metrics 9464, got %+v", d.Name, c.Ports)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s / limit %s: both must be set, request <= limit", d.Name, res, req.String(), lim.String())
		}
	}
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot ||
		p.SecurityContext.RunAsUser == nil || *p.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod must run as a non-root user", d.Name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: container must have a read-only root, no privilege escalation and drop ALL capabilities: %+v", d.Name, sc)
	}
	env := resolveEnv(t, r, d)
	if env["WALHOOK_HTTP_LISTEN"] != "0.0.0.0:9464" {
		t.Errorf("%s: WALHOOK_HTTP_LISTEN=%q; the probes need 0.0.0.0:9464", d.Name, env["WALHOOK_HTTP_LISTEN"])
	}
	cfg := deploymentConfig(t, r, d, env)
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = !m.ReadOnly
	}
	for _, dir := range []string{cfg.CDC.SpillDir, cfg.BubbleUp.StateDir, "/tmp"} {
		if !writableUnder(mounts, dir) {
			t.Errorf("%s: %s is not under a writable volume mount; the root filesystem is read-only", d.Name, dir)
		}
	}
}

func writableUnder(mounts map[string]bool, dir string) bool {
	for m, w := range mounts {
		if w && (dir == m || strings.HasPrefix(dir, m+"/")) {
			return true
		}
	}
	return false
}

// externalSecretValues stand in for Secrets an overlay expects to exist in the cluster (prod):
// plausible values, so the config check still runs.
var externalSecretValues = map[string]string{
	"WALHOOK_PG_URL":              "postgres://walhook:x@db.example.com:5432/walhook?sslmode=verify-full",
	"WALHOOK_KAFKA_SASL_USERNAME": "walhook",
	"WALHOOK_KAFKA_SASL_PASSWORD": "x",
}

// resolveEnv is the container's environment as Kubernetes would set it: values, and Secret keys
// from the rendered Secrets. A required key of a Secret the overlay does not render takes a
// value from externalSecretValues; an optional one stays unset.
func resolveEnv(t *testing.T, r *rendered, d *appsv1.Deployment) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			sec := r.secrets[ref.Name]
			if sec == nil {
				if !optional {
					v, ok := externalSecretValues[e.Name]
					if !ok {
						t.Errorf("%s: %s needs Secret %s, which the overlay neither renders nor documents as external", d.Name, e.Name, ref.Name)
					}
					env[e.Name] = v
				}
				continue
			}
			v, ok := sec.StringData[ref.Key]
			if !ok {
				b, okData := sec.Data[ref.Key]
				v, ok = string(b), okData
			}
			if !ok && !optional {
				t.Errorf("%s: %s needs key %q of Secret %s, which has no such key", d.Name, e.Name, ref.Key, ref.Name)
			}
			if ok {
				env[e.Name] = v
			}
		default:
			t.Errorf("%s: env %s uses an unexpected source %+v", d.Name, e.Name, e.ValueFrom)
		}
	}
	return env
}

// deploymentConfig parses, strictly and with the container's environment, the walhook.yaml of
// the ConfigMap the Deployment mounts: what the process would run with.
func deploymentConfig(t *testing.T, r *rendered, d *appsv1.Deployment, env map[string]string) *config.Config {
	t.Helper()
	var cmName string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cm := r.configMaps[cmName]
	if cm == nil {
		t.Fatalf("%s: mounts ConfigMap %q, which the overlay does not render", d.Name, cmName)
	}
	data, ok := cm.Data["walhook.yaml"]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no walhook.yaml", d.Name, cmName)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := config.ParseWith([]byte(data), r.name+"/walhook.yaml", config.Options{LookupEnv: lookup})
	if err != nil {
		t.Fatalf("%s: the walhook.yaml it runs with is rejected:\n%v", d.Name, err)
	}
	cfg.Compliance.SetDefaults(cfg.Kafka)
	if err := cfg.ValidateCompliance(); err != nil {
		t.Fatalf("%s: compliance settings: %v", d.Name, err)
	}
	return cfg
}

func checkServiceMonitor(t *testing.T, r *rendered) {
	t.Helper()
	sm := r.monitors["walhook"]
	if sm == nil || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("ServiceMonitor walhook must scrape port metrics at /metrics: %+v", sm)
	}
	for name, svc := range r.services {
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor does not select Service %s (label %s=%s missing)", name, k, v)
			}
		}
	}
}

func checkNetworkPolicy(t *testing.T, r *rendered) {
	t.Helper()
	np := r.netpols["walhook-deliver"]
	if np == nil {
		t.Fatal("no NetworkPolicy walhook-deliver")
	}
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "deliver" {
		t.Errorf("NetworkPolicy walhook-deliver selects %v, want the deliver pods", np.Spec.PodSelector.MatchLabels)
	}
	private := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"}
	var https, dns, kafka, pg bool
	for _, rule := range np.Spec.Egress {
		for _, port := range rule.Ports {
			switch port.Port.IntValue() {
			case 443:
				https = true
				for _, to := range rule.To {
					if to.IPBlock == nil || to.IPBlock.CIDR != "0.0.0.0/0" {
						t.Errorf("443 egress to %+v: want only ipBlock 0.0.0.0/0 minus the private ranges", to)
						continue
					}
					for _, p := range private {
						if !slices.Contains(to.IPBlock.Except, p) {
							t.Errorf("443 egress does not exclude %s", p)
						}
					}
				}
			case 53:
				dns = true
			case 9092:
				kafka = true
			case 5432:
				pg = true
			}
		}
	}
	if !https || !dns || !kafka || !pg {
		t.Errorf("deliver egress: https=%t dns=%t kafka=%t postgres=%t, want all", https, dns, kafka, pg)
	}
}

// expectedTopic is a topic walhook uses, as the code derives it.
type expectedTopic struct {
	partitions int32
	policy     string
	retention  string // retention.ms, "" when not set by walhook
}

// expectedTopics lists every topic walhook uses for cfg, through the same functions the stages
// call, so a renamed topic or a new one fails TestKafkaTopicsMatchTheCode.
func expectedTopics(cfg *config.Config) map[string]expectedTopic {
	k := cfg.Kafka
	out := map[string]expectedTopic{}
	for _, r := range cfg.Model.Roots {
		out[k.ChangeTopic(r)] = expectedTopic{k.Partitions, "delete", ""}
		out[k.SnapshotTopic(r)] = expectedTopic{k.Partitions, "delete", ""}
		for _, ref := range r.References {
			out[k.ReferenceTopic(ref.Table)] = expectedTopic{k.Partitions, "compact", ""}
		}
	}
	// cdc/state.go stateTopic and indexTopic (unexported).
	out[k.TopicPrefix+"cdc.state"] = expectedTopic{1, "compact", ""}
	out[k.TopicPrefix+"cdc.index"] = expectedTopic{k.Partitions, "compact", ""}
	out[kafkaconn.SchemaTopic(k)] = expectedTopic{1, "compact", ""}
	// pipeline: the changelog is kafka.topic_prefix + bubbleup.group + ".changelog", with the
	// change topics' partitions.
	out[k.TopicPrefix+cfg.BubbleUp.Group+".changelog"] = expectedTopic{k.Partitions, "compact", ""}
	// internal/deadletter: the poison topics of bubble-up and compliance (the webhook sink's is
	// in webhook.Topics).
	for _, stage := range []string{config.StageBubbleUp, config.StageCompliance} {
		out[cfg.PoisonTopic(stage)] = expectedTopic{k.Partitions, "delete", ""}
	}
	for _, s := range webhook.Topics(cfg) {
		out[s.Name] = expectedTopic{s.Partitions, s.Configs["cleanup.policy"], s.Configs["retention.ms"]}
	}
	c := cfg.Compliance
	for _, r := range c.SelectRoots(&cfg.Model) {
		out[c.Log.Topic(k, *r)] = expectedTopic{c.Log.Partitions, "delete", c.Log.RetentionMs()}
		out[c.Latest.Topic(k, *r)] = expectedTopic{c.Latest.Partitions, "compact", ""}
	}
	return out
}

func TestKafkaTopicsMatchTheCode(t *testing.T) {
	for name, r := range renderAll(t) {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			d := r.deployments["walhook-cdc"]
			cfg := deploymentConfig(t, r, d, resolveEnv(t, r, d))
			want := expectedTopics(cfg)
			for topic, w := range want {
				kt := r.topics[topic]
				if kt == nil {
					t.Errorf("no KafkaTopic for %s, which walhook uses (partitions %d, cleanup.policy %s); add it to deploy/k8s/base/kafkatopics.yaml",
						topic, w.partitions, w.policy)
					continue
				}
				if kt.Spec.Partitions != w.partitions {
					t.Errorf("KafkaTopic %s: %d partitions, walhook creates it with %d", topic, kt.Spec.Partitions, w.partitions)
				}
				if got := kt.Spec.Config["cleanup.policy"]; got != w.policy {
					t.Errorf("KafkaTopic %s: cleanup.policy %q, walhook needs %q", topic, got, w.policy)
				}
				if w.retention != "" && kt.Spec.Config["retention.ms"] != w.retention {
					t.Errorf("KafkaTopic %s: retention.ms %q, walhook sets %q", topic, kt.Spec.Config["retention.ms"], w.retention)
				}
				if kt.Labels["strimzi.io/cluster"] == "" {
					t.Errorf("KafkaTopic %s: no strimzi.io/cluster label; the Topic Operator ignores it", topic)
				}
			}
			for topic := range r.topics {
				if _, ok := want[topic]; !ok {
					t.Errorf("KafkaTopic %s is not a topic walhook uses; remove it or teach expectedTopics about it", topic)
				}
			}
			for _, s := range []string{"bubbleup", "deliver"} {
				if h := r.hpas["walhook-"+s]; h != nil && h.Spec.MaxReplicas > cfg.Kafka.Partitions {
					t.Errorf("HPA walhook-%s: maxReplicas %d > %d partitions; the extra members would sit idle", s, h.Spec.MaxReplicas, cfg.Kafka.Partitions)
				}
			}
		})
	}
}

func TestProdDiffersFromDev(t *testing.T) {
	dev, prod := render(t, "overlays/dev"), render(t, "overlays/prod")
	replicas := func(r *rendered, s string) int32 { return *r.deployments["walhook-"+s].Spec.Replicas }
	if replicas(prod, "cdc") != 2 || replicas(dev, "cdc") != 1 {
		t.Errorf("cdc replicas: prod %d (want 2: active + standby), dev %d (want 1)", replicas(prod, "cdc"), replicas(dev, "cdc"))
	}
	for _, s := range []string{"bubbleup", "deliver"} {
		if p, d := prod.hpas["walhook-"+s], dev.hpas["walhook-"+s]; *p.Spec.MinReplicas <= *d.Spec.MinReplicas || p.Spec.MaxReplicas <= d.Spec.MaxReplicas {
			t.Errorf("HPA walhook-%s: prod %d..%d should exceed dev %d..%d", s, *p.Spec.MinReplicas, p.Spec.MaxReplicas, *d.Spec.MinReplicas, d.Spec.MaxReplicas)
		}
	}
	limit := func(r *rendered, s string) resource.Quantity {
		return r.deployments["walhook-"+s].Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
	}
	for _, s := range stages {
		if l, d := limit(prod, s), limit(dev, s); l.Cmp(d) <= 0 {
			t.Errorf("%s memory limit: prod %s should exceed dev %s", s, l.String(), d.String())
		}
	}
	cdc := dev.deployments["walhook-cdc"].Spec.Template.Spec.Containers[0].Resources
	if l, r := cdc.Limits[corev1.ResourceMemory], cdc.Requests[corev1.ResourceMemory]; l.String() != "512Mi" {
		t.Errorf("dev cdc memory limit %s, want 512Mi", l.String())
	} else if r.Cmp(l) > 0 {
		t.Errorf("dev cdc memory request %s above its limit", r.String())
	}
	if len(prod.secrets) != 0 {
		t.Errorf("prod renders Secrets %v; its Secrets are created outside git", keys(prod.secrets))
	}
	if len(dev.secrets) == 0 {
		t.Error("dev renders no Secrets")
	}
	for _, kt := range prod.topics {
		if kt.Spec.Replicas != 3 || kt.Spec.Config["min.insync.replicas"] == "" {
			t.Errorf("prod KafkaTopic %s: replicas %d, min.insync.replicas %q; want 3 and 2", kt.Spec.TopicName, kt.Spec.Replicas, kt.Spec.Config["min.insync.replicas"])
		}
	}
	for _, r := range []*rendered{dev, prod} {
		for _, d := range r.deployments {
			if d.Namespace == "" {
				t.Errorf("%s: Deployment %s has no namespace", r.name, d.Name)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"FROM golang:1.26 AS build", "CGO_ENABLED=0", "-trimpath", "./cmd/walhook",
		"gcr.io/distroless/static", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/walhook"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
