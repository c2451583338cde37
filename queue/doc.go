// Package queue carries work between crmsync's components on Redis: the event
// stream and its consumer group. Redis holds work and coordination only; everything
// in it can be rebuilt from the store.
package queue
