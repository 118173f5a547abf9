package commands

import (
	"encoding/json"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// event is one line of runc's events output.
type event struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Data *protocol.Stats `json:"data,omitempty"`
}

// Events prints a container's stats, from its cgroup in the guest.
var Events = &cli.Command{
	Name:      "events",
	Usage:     "display container stats (CPU, memory, pids, blkio from its guest cgroup) as JSON",
	ArgsUsage: "<container-id>",
	Description: `Prints {"type":"stats","id":ID,"data":{...}} lines as runc does: once with
--stats, otherwise every --interval until the container stops. skiff
reports no OOM events.`,
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: defaultEventsInterval, Usage: "time between stats"},
		&cli.BoolFlag{Name: "stats", Usage: "print the stats once, then exit"},
	},
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		emit := func(s *protocol.Stats) error { return enc.Encode(event{Type: "stats", ID: id, Data: s}) }
		if c.Bool("stats") {
			s, err := store(c).Stats(c.Context, id)
			if err != nil {
				return err
			}
			return emit(s)
		}
		return store(c).Events(c.Context, id, c.Duration("interval"), emit)
	},
}

const defaultEventsInterval = 5 * time.Second // as runc
