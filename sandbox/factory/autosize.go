package factory

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// An auto-sized pool (factory.cache_auto) keeps as many VMs waiting as
// sandboxes asked the pool for in the last startWindow, at least one and
// at most factory.cache: a burst of starts grows it up to the bound, and
// as the rate falls the fillers stop the surplus. Each start that asks the
// pool (takePooled) appends its time to pool/starts.

// startWindow is how far back the start rate looks: about the time a
// refill of a few VMs takes under TCG, so that the VMs of a sustained
// rate are ready when the next starts come.
const startWindow = 60 * time.Second

// startsKeep bounds the starts file: it is rewritten with only the
// window's starts once it holds more lines.
const startsKeep = 4096

func startsFile(pool string) string { return filepath.Join(pool, "starts") }

// recordStart appends now to the pool's starts file. A lost record only
// makes the pool a little smaller for a while.
func recordStart(pool string, now time.Time) {
	f, err := os.OpenFile(startsFile(pool), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	// One write of one short line: O_APPEND keeps concurrent starts'
	// lines whole.
	f.WriteString(strconv.FormatInt(now.UnixNano(), 10) + "\n")
	f.Close()
}

// recentStarts counts the starts in the window before now, and rewrites
// the file with only those when it has grown past startsKeep lines.
func recentStarts(pool string, now time.Time) int {
	f, err := os.Open(startsFile(pool))
	if err != nil {
		return 0
	}
	defer f.Close()
	var recent []string
	lines := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines++
		ns, err := strconv.ParseInt(strings.TrimSpace(s.Text()), 10, 64)
		if err != nil {
			continue
		}
		if t := time.Unix(0, ns); now.Sub(t) <= startWindow && !t.After(now.Add(startWindow)) {
			recent = append(recent, s.Text())
		}
	}
	if lines > startsKeep {
		tmp := startsFile(pool) + ".tmp"
		if os.WriteFile(tmp, []byte(strings.Join(recent, "\n")+"\n"), 0o600) == nil {
			os.Rename(tmp, startsFile(pool))
		}
	}
	return len(recent)
}

// autoTarget is how many VMs an auto-sized pool keeps waiting after
// starts recent starts, with max the configured bound.
func autoTarget(starts, bound int) int {
	return min(max(starts, 1), bound)
}

// poolTarget is how many VMs the pool of f keeps waiting now.
func (f *Factory) poolTarget(now time.Time) int {
	fc := f.cfg.Factory
	if !fc.CacheAuto {
		return fc.Cache
	}
	return autoTarget(recentStarts(f.pool().Dir, now), fc.Cache)
}

func (f *Factory) describeTarget(n int) string {
	if f.cfg.Factory.CacheAuto {
		return fmt.Sprintf("%d (auto: starts in the last %v, at most %d)", n, startWindow, f.cfg.Factory.Cache)
	}
	return strconv.Itoa(n)
}
