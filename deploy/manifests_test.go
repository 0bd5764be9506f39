package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// podUser is the uid the manifests run the gateway as (distroless nonroot).
const podUser = 65532

// manifests are the decoded objects of kubernetes/*.yaml.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	configMaps  []*corev1.ConfigMap
	accounts    []*corev1.ServiceAccount
	netpols     []*networkingv1.NetworkPolicy
}

// decodeStrict decodes one YAML document into the Kubernetes type its kind
// names; a field the type does not have is an error, so a typo or a field
// of another API version fails here rather than being dropped by a server.
func (m *manifests) decodeStrict(doc []byte) error {
	var meta unstructured.Unstructured
	if err := yaml.Unmarshal(doc, &meta.Object); err != nil {
		return err
	}
	gvk := meta.GroupVersionKind()
	strict := func(into any) error { return yaml.UnmarshalStrict(doc, into) }
	switch gvk.GroupVersion().String() + "/" + gvk.Kind {
	case "apps/v1/Deployment":
		var o appsv1.Deployment
		m.deployments = append(m.deployments, &o)
		return strict(&o)
	case "v1/Service":
		var o corev1.Service
		m.services = append(m.services, &o)
		return strict(&o)
	case "policy/v1/PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		m.pdbs = append(m.pdbs, &o)
		return strict(&o)
	case "v1/ConfigMap":
		var o corev1.ConfigMap
		m.configMaps = append(m.configMaps, &o)
		return strict(&o)
	case "v1/ServiceAccount":
		var o corev1.ServiceAccount
		m.accounts = append(m.accounts, &o)
		return strict(&o)
	case "networking.k8s.io/v1/NetworkPolicy":
		var o networkingv1.NetworkPolicy
		m.netpols = append(m.netpols, &o)
		return strict(&o)
	}
	return fmt.Errorf("apiVersion %q kind %q: not a kind this test knows; add it to decodeStrict", meta.GetAPIVersion(), meta.GetKind())
}

// splitDocuments splits a multi-document YAML file on its --- lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			if err := m.decodeStrict(doc); err != nil {
				t.Errorf("%s: document %d: %v", f, i+1, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestDecodeStrictRefusesUnknownFields(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"typo in the spec", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n", `unknown field "replica"`},
		{"field of another kind", "apiVersion: v1\nkind: Service\nspec:\n  replicas: 3\n", `unknown field "replicas"`},
		{"unknown kind", "apiVersion: v1\nkind: Pod\n", `not a kind this test knows`},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\ndata: {}\ndata: {}\n", `already set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&manifests{}).decodeStrict([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeStrict(%q) = %v, want an error containing %q", tt.doc, err, tt.want)
			}
		})
	}
}

func TestManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("want one Deployment, Service, PodDisruptionBudget and ConfigMap; got %d, %d, %d, %d",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.configMaps))
	}
	d := m.deployments[0]
	spec := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("Deployment replicas = %v, want 3", d.Spec.Replicas)
	}
	sel, err := metaSelector(d.Spec.Selector.MatchLabels)
	if err != nil {
		t.Fatal(err)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	if !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", sel, podLabels)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update may take a replica down before its successor is ready: %+v", d.Spec.Strategy)
	}

	// The Service and the PodDisruptionBudget select the gateway pods.
	svc := m.services[0]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not match the pods %v", svc.Spec.Selector, podLabels)
	}
	pdb := m.pdbs[0]
	pdbSel, err := metaSelector(pdb.Spec.Selector.MatchLabels)
	if err != nil {
		t.Fatal(err)
	}
	if !pdbSel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector does not match the pods")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 2 {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want at least 2 of 3", pdb.Spec.MinAvailable)
	}

	// Pod security.
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != podUser {
		t.Errorf("pod securityContext must run as non-root uid %d: %+v", podUser, psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext must set seccompProfile RuntimeDefault")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it does not need")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container allows privilege escalation")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("container capabilities %+v, want drop [ALL] and none added", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container seccompProfile is not RuntimeDefault")
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("image %q is not pinned to a version", c.Image)
	}

	// Resources.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("no %s request", r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("memory limit %v is missing or below the request", q.String())
	}

	// Probes: /healthz for liveness (and startup), /readyz for readiness,
	// on a port the container declares.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", name, path)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path %s, want %s", name, p.HTTPGet.Path, path)
		}
		if _, ok := ports[p.HTTPGet.Port.String()]; !ok {
			t.Errorf("%s probe port %s is not a declared container port %v", name, p.HTTPGet.Port.String(), ports)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("startup", c.StartupProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	for _, sp := range svc.Spec.Ports {
		if _, ok := ports[sp.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %s, not a container port", sp.Name, sp.TargetPort.String())
		}
	}

	// Shutdown: the grace period outlasts the preStop pause plus the
	// gateway's own --shutdown-timeout.
	settings := gatewaySettings(t, m, c)
	grace := int64(30)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	var pause int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pause = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
		t.Error("preStop exec needs a command in an image that has no shell: use sleep")
	}
	if st := settings["shutdown-timeout"]; st == "" || durationSeconds(t, st)+pause >= grace {
		t.Errorf("terminationGracePeriodSeconds %d does not outlast preStop %ds + shutdown-timeout %q", grace, pause, st)
	}

	// Secrets: the store DSN, the admin key and the bundle-signing keys
	// come from a Secret, never from the manifests themselves.
	secretFiles := map[string]bool{} // paths inside the container backed by a Secret
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name != v.Name {
				continue
			}
			if !vm.ReadOnly {
				t.Errorf("secret volume %s is mounted writable", v.Name)
			}
			for _, it := range v.Secret.Items {
				secretFiles[filepath.Join(vm.MountPath, it.Path)] = true
			}
		}
	}
	for _, key := range []string{"admin-key-file", "trust-key"} {
		for _, f := range settingList(settings[key]) {
			if !secretFiles[f] {
				t.Errorf("setting %s: %s is not a file of a mounted Secret (%v)", key, f, secretFiles)
			}
		}
		if settings[key] == "" {
			t.Errorf("the settings have no %s", key)
		}
	}
	var dsnFromSecret bool
	for _, e := range c.Env {
		if e.Name == "ARMORIQ_STORE" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			dsnFromSecret = true
		}
		if strings.Contains(e.Value, "://") {
			t.Errorf("env %s has a literal URL: credentials belong in the Secret", e.Name)
		}
	}
	if !dsnFromSecret {
		t.Error("ARMORIQ_STORE does not come from a Secret")
	}
	if s := settings["store"]; s != "" {
		t.Errorf("settings name the store %q: it belongs in the Secret", s)
	}
	for k, v := range m.configMaps[0].Data {
		if strings.Contains(v, "ak_live_") || strings.Contains(v, "PRIVATE KEY") || strings.Contains(v, "postgres://") {
			t.Errorf("ConfigMap key %s holds a secret", k)
		}
	}

	// Everything the settings point at is mounted, and only the mounts
	// that must be written to are writable.
	writable := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		if !vm.ReadOnly {
			writable[vm.MountPath] = true
		}
	}
	if !writable[settings["data"]] {
		t.Errorf("data directory %q is not a writable mount (the root filesystem is read-only)", settings["data"])
	}
	if settings["addr"] == "" || !strings.HasSuffix(settings["addr"], fmt.Sprintf(":%d", ports["http"])) {
		t.Errorf("settings addr %q does not listen on the container's http port %d", settings["addr"], ports["http"])
	}
	if a := settings["admin-addr"]; a != "" && !strings.HasSuffix(a, fmt.Sprintf(":%d", ports["admin"])) {
		t.Errorf("settings admin-addr %q does not listen on the container's admin port %d", a, ports["admin"])
	}
}

// gatewaySettings returns the settings file the container is started with,
// from the ConfigMap mounted for it.
func gatewaySettings(t *testing.T, m *manifests, c corev1.Container) map[string]string {
	t.Helper()
	i := slices.Index(c.Args, "--settings")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container args %q do not name a --settings file", c.Args)
	}
	path := c.Args[i+1]
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(path) != vm.MountPath {
			continue
		}
		for _, v := range m.deployments[0].Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range m.configMaps {
				if cm.Name != v.ConfigMap.Name {
					continue
				}
				data, ok := cm.Data[filepath.Base(path)]
				if !ok {
					t.Fatalf("ConfigMap %s has no key %s", cm.Name, filepath.Base(path))
				}
				var raw map[string]any
				if err := yaml.UnmarshalStrict([]byte(data), &raw); err != nil {
					t.Fatalf("ConfigMap %s: %s: %v", cm.Name, filepath.Base(path), err)
				}
				out := map[string]string{}
				for k, v := range raw {
					out[k] = fmt.Sprint(v)
				}
				return out
			}
		}
	}
	t.Fatalf("--settings %s is not a file of a mounted ConfigMap", path)
	return nil
}

func settingList(v string) []string {
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	return strings.Fields(v)
}

func durationSeconds(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil || unit != "s" {
		t.Fatalf("duration %q: want whole seconds like 25s", s)
	}
	return n
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector: it would match every pod")
	}
	return labels.SelectorFromSet(m), nil
}
