package emulator

import (
	"math/rand/v2"
	"net/http"
	"sync"
)

// Fault injection (Config.FaultRate): some Web API requests fail on purpose, so a
// client's retries and their safety are exercised the way a flaky network and a
// busy Dataverse exercise them.

// fault is what happens to one request.
type fault uint8

const (
	faultNone        fault = iota
	faultUnavailable       // 503 with Dataverse's error JSON; nothing happened
	faultCutBefore         // connection closed before the request was handled
	faultCutAfter          // handled (the change is made), then the answer is lost
)

// codeUnavailable is the error.code of an injected 503 (the emulator's choice: the
// platform's generic code).
const codeUnavailable = "0x80040216"

// faults draws the fate of each request from a seedable source.
type faults struct {
	rate float64

	mu  sync.Mutex
	rnd *rand.Rand
}

// next decides a request's fate: with probability rate a fault, half of them 503s
// and half cuts, a cut equally likely before or after the request took effect.
func (f *faults) next() fault {
	if f.rate <= 0 {
		return faultNone
	}
	f.mu.Lock()
	hit, kind := f.rnd.Float64(), f.rnd.Float64()
	f.mu.Unlock()
	switch {
	case hit >= f.rate:
		return faultNone
	case kind < 0.5:
		return faultUnavailable
	case kind < 0.75:
		return faultCutBefore
	}
	return faultCutAfter
}

// errUnavailable is the answer of an injected 503.
func errUnavailable() *apiError {
	return errorf(http.StatusServiceUnavailable, codeUnavailable, "The service is temporarily unavailable. Try again later.")
}

// cut closes the connection without an answer: hijacked where the server allows
// it, else by aborting the handler, which net/http turns into a closed connection
// (HTTP/1) or a reset stream (HTTP/2).
func cut(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// lostAnswer is the ResponseWriter of a request whose answer will be cut: the
// handler runs to the end, what it writes goes nowhere.
type lostAnswer struct{ h http.Header }

func (l *lostAnswer) Header() http.Header         { return l.h }
func (l *lostAnswer) Write(p []byte) (int, error) { return len(p), nil }
func (l *lostAnswer) WriteHeader(int)             {}
