package installer

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiff-oci/skiff/config"
)

// deployDir holds the manifests, at the top of the checkout.
const deployDir = "../deploy"

// documents splits a YAML stream into its non-empty documents.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// decodeStrict decodes one document into the API type its kind names,
// refusing unknown and duplicate fields, as `kubectl apply
// --validate=strict` would.
func decodeStrict(t *testing.T, name string, doc []byte) any {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		obj = &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		obj = &rbacv1.ClusterRoleBinding{}
	case "node.k8s.io/v1 RuntimeClass":
		obj = &nodev1.RuntimeClass{}
	default:
		t.Fatalf("%s: unexpected kind %q of apiVersion %q", name, tm.Kind, tm.APIVersion)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %s: %v", name, tm.Kind, err)
	}
	return obj
}

// loadDeploy decodes every manifest of deploy/, keyed by kind.
func loadDeploy(t *testing.T) map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", deployDir, err)
	}
	objs := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range documents(data) {
			obj := decodeStrict(t, f, doc)
			kind := typeName(obj)
			if _, dup := objs[kind]; dup {
				t.Fatalf("two %s manifests in deploy/", kind)
			}
			objs[kind] = obj
		}
	}
	return objs
}

func typeName(obj any) string {
	switch obj.(type) {
	case *appsv1.DaemonSet:
		return "DaemonSet"
	case *corev1.ServiceAccount:
		return "ServiceAccount"
	case *rbacv1.ClusterRole:
		return "ClusterRole"
	case *rbacv1.ClusterRoleBinding:
		return "ClusterRoleBinding"
	case *nodev1.RuntimeClass:
		return "RuntimeClass"
	}
	return "?"
}

func TestDeployManifests(t *testing.T) {
	objs := loadDeploy(t)
	for _, k := range []string{"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RuntimeClass"} {
		if objs[k] == nil {
			t.Fatalf("deploy/ has no %s", k)
		}
	}
	ds := objs["DaemonSet"].(*appsv1.DaemonSet)
	sa := objs["ServiceAccount"].(*corev1.ServiceAccount)
	role := objs["ClusterRole"].(*rbacv1.ClusterRole)
	bind := objs["ClusterRoleBinding"].(*rbacv1.ClusterRoleBinding)

	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("DaemonSet: hostPID must be true (nsenter into the host to restart the runtime)")
	}
	if pod.NodeSelector[EnabledLabel] != "true" {
		t.Errorf("DaemonSet: nodeSelector %v, want %s=true", pod.NodeSelector, EnabledLabel)
	}
	sel, err := metav1.LabelSelectorAsMap(ds.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("DaemonSet: selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if pod.ServiceAccountName != sa.Name || ds.Namespace != sa.Namespace {
		t.Errorf("DaemonSet runs as %s/%s, the ServiceAccount is %s/%s", ds.Namespace, pod.ServiceAccountName, sa.Namespace, sa.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("DaemonSet: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("DaemonSet: the container must be privileged")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if v := env["SKIFF_RUNTIME"].Value; v != "crio" && v != "containerd" {
		t.Errorf("DaemonSet: SKIFF_RUNTIME=%q, want crio or containerd", v)
	}
	if f := env["NODE_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("DaemonSet: NODE_NAME must come from spec.nodeName")
	}

	// Every host directory the installer writes is mounted under /host,
	// where `skiff install --prefix /host` looks for it.
	vols := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if p, ok := vols[m.Name]; ok {
			mounts[p] = m.MountPath
		}
	}
	for _, p := range []string{"/usr/local", "/etc/crio", "/etc/containerd", "/run"} {
		if mounts[p] != "/host"+p {
			t.Errorf("DaemonSet: host %s mounted at %q, want /host%s", p, mounts[p], p)
		}
	}
	script, err := os.ReadFile(filepath.Join(deployDir, "install-on-node.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Command) == 0 || c.Command[0] != "/skiff/install-on-node.sh" {
		t.Errorf("DaemonSet: command %v, want /skiff/install-on-node.sh", c.Command)
	}
	for _, want := range []string{`install --for "$SKIFF_RUNTIME" --prefix /host`, ReadyLabel, "/host/usr/local/bin/skiff", "/host/usr/local/share/skiff/"} {
		if !bytes.Contains(script, []byte(want)) {
			t.Errorf("install-on-node.sh lacks %q", want)
		}
	}

	// The ServiceAccount may patch nodes (the label), and that is all.
	var canPatch bool
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if res != "nodes" {
				t.Errorf("ClusterRole grants %v on %s: the installer only labels nodes", r.Verbs, res)
			}
		}
		for _, v := range r.Verbs {
			canPatch = canPatch || v == "patch"
		}
	}
	if !canPatch {
		t.Error("ClusterRole: no patch on nodes")
	}
	if bind.RoleRef.Name != role.Name || bind.RoleRef.Kind != "ClusterRole" {
		t.Errorf("ClusterRoleBinding binds %s %s, want ClusterRole %s", bind.RoleRef.Kind, bind.RoleRef.Name, role.Name)
	}
	if len(bind.Subjects) != 1 || bind.Subjects[0].Kind != "ServiceAccount" || bind.Subjects[0].Name != sa.Name || bind.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ClusterRoleBinding subjects %+v, want the ServiceAccount %s/%s", bind.Subjects, sa.Namespace, sa.Name)
	}
}

func checkRuntimeClass(t *testing.T, name string, rc *nodev1.RuntimeClass, memMiB, milliCPU int64) {
	t.Helper()
	if rc.Name != RuntimeName || rc.Handler != RuntimeName {
		t.Errorf("%s: RuntimeClass %q handler %q, want %q", name, rc.Name, rc.Handler, RuntimeName)
	}
	if rc.Overhead == nil {
		t.Fatalf("%s: no overhead", name)
	}
	mem, cpu := rc.Overhead.PodFixed[corev1.ResourceMemory], rc.Overhead.PodFixed[corev1.ResourceCPU]
	if want := resource.NewQuantity(memMiB<<20, resource.BinarySI); mem.Cmp(*want) != 0 {
		t.Errorf("%s: overhead memory %s, want %s", name, mem.String(), want)
	}
	if want := resource.NewMilliQuantity(milliCPU, resource.DecimalSI); cpu.Cmp(*want) != 0 {
		t.Errorf("%s: overhead cpu %s, want %s", name, cpu.String(), want)
	}
	if rc.Scheduling == nil || rc.Scheduling.NodeSelector[ReadyLabel] != "true" {
		t.Errorf("%s: scheduling must select %s=true", name, ReadyLabel)
	}
}

// deploy/runtimeclass.yaml is what install --for kubernetes prints for
// the default configuration.
func TestDeployRuntimeClassMatchesDefaults(t *testing.T) {
	rc := loadDeploy(t)["RuntimeClass"].(*nodev1.RuntimeClass)
	mem, cpu := Overhead(config.Default().Hypervisor)
	checkRuntimeClass(t, "deploy/runtimeclass.yaml", rc, int64(mem), int64(cpu))
}

func TestGeneratedRuntimeClassDecodes(t *testing.T) {
	for _, h := range []config.Hypervisor{
		config.Default().Hypervisor,
		{DefaultMemory: 1024, DefaultVCPUs: 1},
		{DefaultMemory: 4096, DefaultVCPUs: 4},
	} {
		cfg := config.Default()
		cfg.Hypervisor = h
		y, err := RuntimeClassYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		docs := documents(y)
		if len(docs) != 1 {
			t.Fatalf("%d documents, want 1", len(docs))
		}
		rc := decodeStrict(t, "generated", docs[0]).(*nodev1.RuntimeClass)
		checkRuntimeClass(t, "generated", rc, int64(h.DefaultMemory+HostOverheadMiB), int64(h.DefaultVCPUs*MilliCPUPerVCPU))
	}
	// default_memory = 1024: 1280Mi of pod overhead.
	cfg := config.Default()
	cfg.Hypervisor.DefaultMemory = 1024
	y, _ := RuntimeClassYAML(cfg)
	rc := decodeStrict(t, "generated", documents(y)[0]).(*nodev1.RuntimeClass)
	if m := rc.Overhead.PodFixed[corev1.ResourceMemory]; m.String() != "1280Mi" {
		t.Errorf("overhead memory %s for default_memory 1024, want 1280Mi", m.String())
	}
}

// The strict decoder is what catches a misspelt field.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: skiff\nhandler: skiff\noverheads: {}\n")
	if err := yaml.UnmarshalStrict(bad, &nodev1.RuntimeClass{}); err == nil {
		t.Error("a misspelt field decoded without error")
	}
}
