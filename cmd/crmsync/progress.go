package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress shows how far a long operator command is. On a terminal it redraws one
// line: a bar, the count, the rate and the time left. Anywhere else (a pipe, a log
// file, CI) it writes a plain line now and then, so the log stays readable.
type progress struct {
	w     io.Writer
	bar   bool   // redraw one line instead of writing plain lines
	unit  string // what is counted: "rows", "changes"
	total int    // 0: not known, so no bar and no time left
	now   func() time.Time
	every time.Duration // plain lines: at most one per every, besides the last

	start    time.Time
	done     int
	lastLine time.Time // when the last plain line was written
	lineDone int       // done at the last plain line; -1: none yet
	drawn    bool      // the bar is on the terminal's current line
}

// plainEvery is how often plain progress lines come at most.
const plainEvery = 2 * time.Second

// newProgress starts a progress display on w, a bar when w is a terminal.
func newProgress(w io.Writer, unit string, total int) *progress {
	return startProgress(w, isTerminal(w), unit, total, time.Now)
}

// startProgress is newProgress with the display kind and the clock given, for tests.
func startProgress(w io.Writer, bar bool, unit string, total int, now func() time.Time) *progress {
	return &progress{w: w, bar: bar, unit: unit, total: total, now: now, every: plainEvery, start: now(), lineDone: -1}
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update records how many are done so far and shows it.
func (p *progress) update(done int) {
	p.done = done
	if p.bar {
		p.draw()
		return
	}
	if p.lineDone < 0 || p.now().Sub(p.lastLine) >= p.every {
		p.line()
	}
}

// logf writes a message on a line of its own, keeping the bar below it.
func (p *progress) logf(format string, args ...any) {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.drawn {
		p.draw()
	}
}

// finish shows the final count and leaves the terminal's line to what follows.
func (p *progress) finish() {
	if p.bar {
		p.draw()
		fmt.Fprintln(p.w)
		p.drawn = false
		return
	}
	if p.lineDone != p.done {
		p.line()
	}
}

func (p *progress) draw() {
	s := p.status()
	if p.total > 0 {
		const width = 24
		filled := width * min(p.done, p.total) / p.total
		s = "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "] " + s
	}
	fmt.Fprint(p.w, "\r"+s+"\x1b[K")
	p.drawn = true
}

func (p *progress) line() {
	fmt.Fprintln(p.w, p.status())
	p.lastLine, p.lineDone = p.now(), p.done
}

// status is the count, the rate and the time left (ETA; with no total, the time
// taken so far): "3000/10000 rows (30%), 1500 rows/s, ETA 4.7s".
func (p *progress) status() string {
	elapsed := p.now().Sub(p.start)
	var parts []string
	if p.total > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d %s (%d%%)", p.done, p.total, p.unit, 100*p.done/p.total))
	} else {
		parts = append(parts, fmt.Sprintf("%d %s", p.done, p.unit))
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed.Seconds()
		parts = append(parts, formatRate(rate)+" "+p.unit+"/s")
	}
	switch {
	case p.total > 0 && p.done >= p.total:
		parts = append(parts, "took "+roundDuration(elapsed).String())
	case p.total > 0 && rate > 0:
		left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		parts = append(parts, "ETA "+roundDuration(left).String())
	case p.total == 0:
		parts = append(parts, roundDuration(elapsed).String())
	}
	return strings.Join(parts, ", ")
}

func formatRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.0f", r)
}

// roundDuration rounds to what a person reads: whole seconds, tenths below 10 s.
func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
