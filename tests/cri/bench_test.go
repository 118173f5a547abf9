package cri

// The pod benchmark of `make bench` (scripts/bench-pods.sh): the suite's
// containerd and CRI client, skiff against runc in one run. It runs only
// when SKIFF_CRI_BENCH names the file to write its markdown table to; a
// plain `go test` skips it at once.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// benchHandlers are compared in every row: skiff first, runc the reference.
var benchHandlers = []string{"skiff", "runc"}

const (
	// benchIdle is how long a pod sits with both containers running before
	// its memory is read: the guest and the shims settle after start.
	benchIdle = 3 * time.Second
	// benchMany is the number of pods started at once.
	benchMany = 10
)

// benchPod is one pod of the benchmark: a sandbox and two sleeping
// containers. Unlike the tests' pod it reports errors instead of failing a
// *testing.T, so that pods can be started from goroutines.
type benchPod struct {
	handler, name, dir string
	begun              time.Time // when RunPodSandbox was called
	id                 string
	ids                []string // sandbox first, then its containers
}

// podTimes are the phases of one pod's start and its total.
type podTimes struct {
	run, create, start, total time.Duration
}

func (b *benchPod) config() *runtimeapi.PodSandboxConfig {
	return podConfig(b.name, fmt.Sprintf("uid-%d-%s", os.Getpid(), b.name), b.name, filepath.Join(b.dir, "logs"))
}

// startBenchPod runs a pod sandbox, creates and starts two containers (in
// order, as the kubelet does) and waits until both are CONTAINER_RUNNING.
func startBenchPod(handler, name string) (*benchPod, podTimes, error) {
	var pt podTimes
	b := &benchPod{handler: handler, name: name, dir: filepath.Join(tmpDir, "bench", name)}
	if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o755); err != nil {
		return b, pt, err
	}
	c, cancel := ctx()
	defer cancel()
	t0 := time.Now()
	b.begun = t0
	r, err := cri.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: b.config(), RuntimeHandler: handler})
	if err != nil {
		return b, pt, fmt.Errorf("RunPodSandbox: %w", err)
	}
	b.id = r.PodSandboxId
	b.ids = append(b.ids, b.id)
	pt.run = time.Since(t0)
	var cids []string
	for _, n := range []string{"app1", "app2"} {
		t1 := time.Now()
		cr, err := cri.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{
			PodSandboxId: b.id, Config: containerConfig(n, 0, sleeper, ""), SandboxConfig: b.config(),
		})
		if err != nil {
			return b, pt, fmt.Errorf("CreateContainer %s: %w", n, err)
		}
		b.ids = append(b.ids, cr.ContainerId)
		cids = append(cids, cr.ContainerId)
		t2 := time.Now()
		pt.create += t2.Sub(t1)
		if _, err := cri.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			return b, pt, fmt.Errorf("StartContainer %s: %w", n, err)
		}
		pt.start += time.Since(t2)
	}
	for _, id := range cids {
		var st *runtimeapi.ContainerStatus
		ok := waitPoll(callTimeout, 5*time.Millisecond, func() bool {
			st, err = cri.status(id)
			return err == nil && st.State == runtimeapi.ContainerState_CONTAINER_RUNNING
		})
		if !ok {
			if err == nil {
				err = fmt.Errorf("container %s is %s (exit code %d)", st.Metadata.GetName(), st.State, st.ExitCode)
			}
			return b, pt, fmt.Errorf("waiting for running: %w", err)
		}
	}
	pt.total = time.Since(t0)
	return b, pt, nil
}

// stopRemove stops and removes the pod, timed, then waits (untimed) until
// none of its processes is left, so that the next measurement starts clean.
func (b *benchPod) stopRemove() (time.Duration, error) {
	if b.id == "" {
		return 0, nil
	}
	c, cancel := ctx()
	defer cancel()
	t0 := time.Now()
	if _, err := cri.rt.StopPodSandbox(c, stopPodRequest(b.id)); err != nil {
		return 0, fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := cri.rt.RemovePodSandbox(c, removePodRequest(b.id)); err != nil {
		return 0, fmt.Errorf("RemovePodSandbox: %w", err)
	}
	d := time.Since(t0)
	b.id = ""
	if !waitUntil(settle, func() bool { return len(processesMentioning(b.ids...)) == 0 }) {
		return d, fmt.Errorf("processes of pod %s left %s after RemovePodSandbox: %v", b.name, settle, processesMentioning(b.ids...))
	}
	return d, nil
}

// saveLogs copies the runtime's log of each of the pod's containers (the
// shim's --log, in containerd's bundle, which RemovePodSandbox deletes)
// to dir, as NAME-N.log (N: 0 the sandbox, then its containers).
func (b *benchPod) saveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, id := range b.ids {
		data, err := os.ReadFile(filepath.Join(tmpDir, "state/io.containerd.runtime.v2.task/k8s.io", id, "log.json"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", b.name, i)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// processes are every host process of the pod: those naming one of its IDs
// (containerd's shim, skiff's host processes, qemu) and their descendants
// (runc's container processes, anything a shim or skiff started).
func (b *benchPod) processes() []int {
	var pids []int
	for _, p := range processesMentioning(b.ids...) {
		pids = append(pids, p.pid)
	}
	return withDescendants(pids)
}

// withDescendants adds every live descendant of pids (from /proc/*/stat).
func withDescendants(pids []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	seen := map[int]bool{}
	var out []int
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	for _, p := range pids {
		walk(p)
	}
	slices.Sort(out)
	return out
}

// pssKiB is a process's proportional set size (smaps_rollup), in KiB.
func pssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "Pss:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// comm is a process's name, for the per-process breakdown.
func comm(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}

// podsPss sums the Pss of every host process of the pods, in KiB, and by
// process name. A process counted twice (it cannot be: sets are disjoint
// by ID) would be counted once.
func podsPss(pods []*benchPod) (total int, byComm map[string]int, err error) {
	byComm = map[string]int{}
	seen := map[int]bool{}
	for _, b := range pods {
		for _, pid := range b.processes() {
			if seen[pid] {
				continue
			}
			seen[pid] = true
			kb, e := pssKiB(pid)
			if e != nil {
				if alive(pid) {
					err = e
				}
				continue
			}
			total += kb
			byComm[comm(pid)] += kb
		}
	}
	return total, byComm, err
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile (p99 of 10 values: the largest).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// benchResult is what one handler measured.
type benchResult struct {
	run, create, start, total []float64 // seconds, one per sequential pod
	stop                      []float64 // seconds
	pss1                      []float64 // MiB, one pod alone
	pss1By                    map[string]int
	manyOK                    int
	manyErrs                  []string
	manyWall                  float64 // seconds to all running
	manyEach                  []float64
	manyStop                  float64 // seconds, all stopped and removed concurrently
	pssMany                   float64 // MiB per pod with benchMany running
	pssManyBy                 map[string]int
	warm                      float64 // seconds: the untimed first pod
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// TestBench measures pods through the CRI, skiff against runc: start to
// two containers running, stop+remove, host memory per idle pod alone and
// with benchMany, and benchMany pods started at once. SKIFF_CRI_BENCH names
// the output file (a markdown table); SKIFF_CRI_BENCH_RUNS the number of
// sequential pods per handler (default 5); SKIFF_CRI_BENCH_LOGS a
// directory for the runtimes' logs of the measured pods.
func TestBench(t *testing.T) {
	out := os.Getenv("SKIFF_CRI_BENCH")
	if out == "" {
		t.Skip("the pod benchmark runs when SKIFF_CRI_BENCH names its output file (scripts/bench-pods.sh, make bench)")
	}
	runs := 5
	if s := os.Getenv("SKIFF_CRI_BENCH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SKIFF_CRI_BENCH_RUNS=%q: want a positive number", s)
		}
		runs = n
	}
	// SKIFF_CRI_BENCH_LOGS: a directory to keep the runtimes' logs of
	// every measured pod in (a skiff run with --debug says where its time
	// goes).
	logs := os.Getenv("SKIFF_CRI_BENCH_LOGS")
	load0 := loadavg()
	began := time.Now()
	res := map[string]*benchResult{}
	for _, h := range benchHandlers {
		res[h] = &benchResult{}
	}
	// Pods left by a failure are removed before the suite's teardown, which
	// would report them as leaks.
	var live []*benchPod
	var liveMu sync.Mutex
	// begun is when each sequential skiff pod began, its end when both
	// containers ran: the timeline of its log is read against them.
	begun := map[string][2]time.Time{}
	keep := func(b *benchPod) {
		liveMu.Lock()
		live = append(live, b)
		liveMu.Unlock()
	}
	t.Cleanup(func() {
		for _, b := range live {
			if b.id != "" {
				b.stopRemove()
			}
		}
	})

	// One untimed pod per handler first: skiff's first sandbox of a
	// configuration may build its VM template; both warm containerd's
	// caches (snapshots of the images, the CNI plugins' pages).
	for _, h := range benchHandlers {
		b, pt, err := startBenchPod(h, "warm-"+h)
		keep(b)
		if err != nil {
			t.Fatalf("%s: first pod: %v", h, err)
		}
		res[h].warm = pt.total.Seconds()
		if _, err := b.stopRemove(); err != nil {
			t.Fatalf("%s: first pod: %v", h, err)
		}
	}

	// Sequential pods, interleaved (skiff then runc, then runc then skiff,
	// ...) so that a busy host hits both alike.
	for i := range runs {
		order := slices.Clone(benchHandlers)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, h := range order {
			r := res[h]
			b, pt, err := startBenchPod(h, fmt.Sprintf("seq%d-%s", i, h))
			keep(b)
			if err != nil {
				t.Fatalf("%s: pod %d: %v", h, i, err)
			}
			r.run = append(r.run, pt.run.Seconds())
			r.create = append(r.create, pt.create.Seconds())
			r.start = append(r.start, pt.start.Seconds())
			r.total = append(r.total, pt.total.Seconds())
			begun[b.name] = [2]time.Time{b.begun, b.begun.Add(pt.total)}
			time.Sleep(benchIdle)
			kb, by, err := podsPss([]*benchPod{b})
			if err != nil {
				t.Errorf("%s: pod %d: Pss: %v", h, i, err)
			}
			r.pss1 = append(r.pss1, float64(kb)/1024)
			r.pss1By = by
			if logs != "" {
				b.saveLogs(logs)
			}
			d, err := b.stopRemove()
			if err != nil {
				t.Fatalf("%s: pod %d: %v", h, i, err)
			}
			r.stop = append(r.stop, d.Seconds())
			t.Logf("%s pod %d: running in %.3fs (RunPodSandbox %.3fs, CreateContainer×2 %.3fs, StartContainer×2 %.3fs), Pss %.1f MiB, stop+remove %.3fs",
				h, i, pt.total.Seconds(), pt.run.Seconds(), pt.create.Seconds(), pt.start.Seconds(), float64(kb)/1024, d.Seconds())
		}
	}

	// benchMany pods at once, one handler at a time (together they would
	// measure each other).
	for _, h := range []string{"runc", "skiff"} {
		r := res[h]
		pods := make([]*benchPod, benchMany)
		each := make([]time.Duration, benchMany)
		errs := make([]error, benchMany)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range benchMany {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				var pt podTimes
				pods[i], pt, errs[i] = startBenchPod(h, fmt.Sprintf("many%d-%s", i, h))
				each[i] = pt.total
			}()
		}
		t0 := time.Now()
		close(gate)
		wg.Wait()
		r.manyWall = time.Since(t0).Seconds()
		var up []*benchPod
		for i, b := range pods {
			keep(b)
			if errs[i] != nil {
				r.manyErrs = append(r.manyErrs, fmt.Sprintf("%s: %v", b.name, errs[i]))
				continue
			}
			r.manyOK++
			r.manyEach = append(r.manyEach, each[i].Seconds())
			up = append(up, b)
		}
		for _, e := range r.manyErrs {
			t.Errorf("%s: %d pods at once: %s", h, benchMany, e)
		}
		time.Sleep(benchIdle)
		if len(up) > 0 {
			kb, by, err := podsPss(up)
			if err != nil {
				t.Errorf("%s: %d pods: Pss: %v", h, benchMany, err)
			}
			r.pssMany = float64(kb) / 1024 / float64(len(up))
			r.pssManyBy = map[string]int{}
			for k, v := range by {
				r.pssManyBy[k] = v / len(up)
			}
		}
		t.Logf("%s: %d/%d pods running in %.3fs, Pss %.1f MiB per pod", h, r.manyOK, benchMany, r.manyWall, r.pssMany)
		if logs != "" {
			for _, b := range up {
				b.saveLogs(logs)
			}
		}
		t0 = time.Now()
		for _, b := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := b.stopRemove(); err != nil {
					t.Errorf("%s: %s: %v", h, b.name, err)
				}
			}()
		}
		wg.Wait()
		r.manyStop = time.Since(t0).Seconds()
	}

	table := benchTable(res, runs, load0, time.Since(began))
	if logs != "" {
		table += skiffTimeline(logs, begun)
	}
	t.Log("\n" + table)
	if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
}

// benchTable writes the results as markdown: skiff, runc, their ratio and
// the target where there is one.
func benchTable(res map[string]*benchResult, runs int, load0 string, took time.Duration) string {
	s, r := res["skiff"], res["runc"]
	var w strings.Builder
	fmt.Fprintf(&w, "## Pods through the CRI (containerd %s), skiff vs runc\n\n", containerdVersion)
	fmt.Fprintf(&w, "%d CPUs, load average %s at start, %s at end; %s in all. Sequential rows: median of %d interleaved pods per runtime (after one untimed pod each); a pod is a sandbox and two busybox containers.\n\n",
		runtime.NumCPU(), load0, loadavg(), took.Round(time.Second), runs)
	fmt.Fprintln(&w, "| measurement | skiff | runc | skiff / runc | target |")
	fmt.Fprintln(&w, "|---|---:|---:|---:|---|")
	secs := func(x float64) string { return fmt.Sprintf("%.3f s", x) }
	mib := func(x float64) string { return fmt.Sprintf("%.1f MiB", x) }
	ratio := func(a, b float64) string {
		if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	row := func(name, sv, rv, ratio, target string) {
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s |\n", name, sv, rv, ratio, target)
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	st, rt := median(s.total), median(r.total)
	row("RunPodSandbox → 2 containers running", secs(st), secs(rt), ratio(st, rt), fmt.Sprintf("≤ 3 × runc: %s", verdict(st <= 3*rt)))
	for _, p := range []struct {
		name string
		s, r []float64
	}{{"… RunPodSandbox", s.run, r.run}, {"… CreateContainer ×2", s.create, r.create}, {"… StartContainer ×2", s.start, r.start}} {
		row(p.name, secs(median(p.s)), secs(median(p.r)), ratio(median(p.s), median(p.r)), "")
	}
	row("first pod of the run (untimed above; skiff may build its VM template)", secs(s.warm), secs(r.warm), ratio(s.warm, r.warm), "")
	ss, rs := median(s.stop), median(r.stop)
	row("StopPodSandbox + RemovePodSandbox", secs(ss), secs(rs), ratio(ss, rs), "")
	s1, r1 := median(s.pss1), median(r.pss1)
	row("host Pss per idle pod, 1 pod alone", mib(s1), mib(r1), ratio(s1, r1), "Kata: ~120 MiB per pod")
	row(fmt.Sprintf("host Pss per idle pod, %d pods running", benchMany), mib(s.pssMany), mib(r.pssMany), ratio(s.pssMany, r.pssMany),
		fmt.Sprintf("≤ 60 MiB: %s (Kata's RuntimeClass overhead for QEMU: 320 MiB)", verdict(s.pssMany > 0 && s.pssMany <= 60)))
	row(fmt.Sprintf("%d pods at once: running", benchMany), fmt.Sprintf("%d/%d", s.manyOK, benchMany), fmt.Sprintf("%d/%d", r.manyOK, benchMany), "", fmt.Sprintf("all: %s", verdict(s.manyOK == benchMany)))
	row("… wall time to all running", secs(s.manyWall), secs(r.manyWall), ratio(s.manyWall, r.manyWall), "")
	sp50, rp50 := percentile(s.manyEach, 50), percentile(r.manyEach, 50)
	row("… each pod's time, p50", secs(sp50), secs(rp50), ratio(sp50, rp50), "")
	sp99, rp99 := percentile(s.manyEach, 99), percentile(r.manyEach, 99)
	row("… each pod's time, p99", secs(sp99), secs(rp99), ratio(sp99, rp99), "")
	row("… all stopped and removed at once", secs(s.manyStop), secs(r.manyStop), ratio(s.manyStop, r.manyStop), "")
	for _, h := range []string{"skiff", "runc"} {
		for _, e := range res[h].manyErrs {
			fmt.Fprintf(&w, "\n%s failed: %s\n", h, e)
		}
	}

	fmt.Fprintf(&w, "\nHost Pss per pod by process name (%d pods running; in parentheses, the last sequential pod alone):\n\n", benchMany)
	fmt.Fprintln(&w, "| runtime | process | Pss per pod |")
	fmt.Fprintln(&w, "|---|---|---:|")
	for _, h := range []string{"skiff", "runc"} {
		names := map[string]bool{}
		for k := range res[h].pssManyBy {
			names[k] = true
		}
		for k := range res[h].pss1By {
			names[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(names)) {
			fmt.Fprintf(&w, "| %s | %s | %.1f MiB (%.1f) |\n", h, k, float64(res[h].pssManyBy[k])/1024, float64(res[h].pss1By[k])/1024)
		}
	}
	return w.String()
}

// skiffTimeline reads the sandbox logs of skiff's sequential pods (kept by
// SKIFF_CRI_BENCH_LOGS; with --debug they say when the VM started and each
// container was created in the guest) and gives the median time of each
// message from RunPodSandbox (pods maps a pod's name to when it was called
// and when both containers ran). Empty when there is nothing to read.
func skiffTimeline(dir string, pods map[string][2]time.Time) string {
	type step struct {
		msg string
		at  []float64
	}
	var steps []*step
	var running []float64
	for name, t := range pods {
		data, err := os.ReadFile(filepath.Join(dir, name+"-0.log"))
		if err != nil || !strings.HasSuffix(name, "-skiff") {
			continue
		}
		running = append(running, t[1].Sub(t[0]).Seconds())
		seen := map[string]int{}
		k := 0
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e struct {
				Time time.Time `json:"time"`
				Msg  string    `json:"msg"`
			}
			if json.Unmarshal([]byte(l), &e) != nil {
				continue
			}
			seen[e.Msg]++
			name := e.Msg
			if seen[e.Msg] > 1 {
				name = fmt.Sprintf("%s (%d)", e.Msg, seen[e.Msg])
			}
			if k == len(steps) {
				steps = append(steps, &step{msg: name})
			}
			if steps[k].msg == name {
				steps[k].at = append(steps[k].at, e.Time.Sub(t[0]).Seconds())
			}
			k++
		}
	}
	if len(steps) < 2 {
		return ""
	}
	origins := func(glob string) string {
		n := map[string]int{}
		files, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(data), "\n") {
				var e struct {
					Msg  string `json:"msg"`
					From string `json:"from"`
				}
				if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "VM started" {
					n[e.From]++
				}
			}
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(n)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
		}
		return strings.Join(parts, ", ")
	}
	steps = append(steps, &step{msg: "(CRI) both containers CONTAINER_RUNNING", at: running})
	var w strings.Builder
	fmt.Fprintf(&w, "\nskiff's sandbox log (--debug) of the sequential pods: median time of each message since RunPodSandbox was called:\n\n")
	fmt.Fprintln(&w, "| log message | at | pods |")
	fmt.Fprintln(&w, "|---|---:|---:|")
	for _, s := range steps {
		fmt.Fprintf(&w, "| %s | %.3f s | %d |\n", s.msg, median(s.at), len(s.at))
	}
	fmt.Fprintf(&w, "\nWhere skiff's VMs came from (its log): sequential pods: %s; %d pods at once (those that ran): %s.\n",
		origins("seq*-skiff-0.log"), benchMany, origins("many*-skiff-0.log"))
	return w.String()
}
