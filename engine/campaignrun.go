package engine

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"crmsync/mail"
	"crmsync/queue"
	"crmsync/store"
)

// CampaignsConfig configures the runner of campaign sends.
type CampaignsConfig struct {
	// Store holds sends, recipients and messages; required.
	Store *store.Store
	// Jobs let one instance of the fleet run a send at a time; required.
	Jobs *queue.Jobs
	// Tokens sign the tracking and unsubscribe links; required.
	Tokens *mail.Tokens
	// PublicURL is how mail clients reach this service (CRMSYNC_PUBLIC_URL); required.
	PublicURL string
	// CRM gives the Web API clients, for sends that name only a CRM campaign
	// activity; default: made from the store's secrets.
	CRM *CRMClients
	// SMTP delivers messages (CRMSYNC_SMTP_URL); nil turns SMTP delivery off, and
	// only connections with a sending engine can send.
	SMTP mail.Sender
	// Engines gives the sender that hands a connection's messages to its sending
	// engine; default: a mail.WebhookSender per connection.
	Engines func(conn *store.Connection, secret string) mail.Sender
	// Publisher announces the bounce reactions delivery records (an address the
	// SMTP server refused for good); optional: the recovery sweep publishes them.
	Publisher interface {
		Publish(ctx context.Context, entries ...queue.Entry) error
	}
	// Progress is told after each page a send delivers; optional.
	Progress interface {
		SendProgress(ctx context.Context, tenant, sendID string) error
	}
	// Owner names this instance in the leases; default host-pid-random.
	Owner string
	// Interval is how often the runner looks for sends to run; default 2 s.
	Interval time.Duration
	// PageSize is how many recipients one step resolves or delivers; default 500.
	PageSize int
	// Workers is how many messages of a page are in flight at once; default 8.
	Workers int
	// MaxPasses is how many times a temporarily refused recipient is tried; default 3.
	MaxPasses int
	// MaxAttempts is how many attempts in a row may find delivery down before the
	// send fails; default 5.
	MaxAttempts int
	// Backoff is the wait before the next pass or attempt, doubling with each; default 30 s.
	Backoff time.Duration
	// Metrics counts the messages handed to a sender by outcome; nil counts nothing.
	Metrics SendMetrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// SendMetrics is told the outcome of every message a sender took or refused:
// "sent", "bounced", "deferred" or "failed"; metrics.Registry implements it.
type SendMetrics interface {
	CampaignMessage(outcome string)
}

// Campaigns creates campaign sends and runs them: it resolves a send's recipients,
// delivers each message once through a mail.Sender, and records the outcomes.
type Campaigns struct {
	cfg  CampaignsConfig
	loop loop

	mu      sync.Mutex
	engines map[string]mail.Sender // by connection id and secret
}

// NewCampaigns validates cfg and returns a runner that has not started.
func NewCampaigns(cfg CampaignsConfig) (*Campaigns, error) {
	if cfg.Store == nil || cfg.Jobs == nil || cfg.Tokens == nil || cfg.PublicURL == "" {
		return nil, errors.New("campaigns: Store, Jobs, Tokens and PublicURL are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Engines == nil {
		cfg.Engines = func(conn *store.Connection, secret string) mail.Sender {
			return mail.NewWebhookSender(mail.WebhookSenderConfig{URL: conn.Campaigns.SendingEngineURL, Secret: secret})
		}
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	cfg.Owner = cmp.Or(cfg.Owner, workerName())
	cfg.Interval = cmp.Or(cfg.Interval, 2*time.Second)
	cfg.PageSize = cmp.Or(cfg.PageSize, 500)
	cfg.Workers = cmp.Or(cfg.Workers, 8)
	cfg.MaxPasses = cmp.Or(cfg.MaxPasses, 3)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, 5)
	cfg.Backoff = cmp.Or(cfg.Backoff, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Campaigns{cfg: cfg, engines: map[string]mail.Sender{}}, nil
}

// Start runs the sends that are due until Stop; it returns at once.
func (c *Campaigns) Start(ctx context.Context) { c.loop.every(ctx, c.cfg.Interval, c.Tick) }

// Stop waits for the page in hand, or for ctx; a send cut short goes on later
// from its last recorded page, on any instance.
func (c *Campaigns) Stop(ctx context.Context) error {
	err := c.loop.stop(ctx, "campaigns")
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.engines {
		_ = s.Close()
	}
	return err
}

// Tick runs the sends that are due and whose lease this instance gets.
func (c *Campaigns) Tick(ctx context.Context) {
	log := c.cfg.Logger.With(slog.String("component", "campaigns"))
	sends, err := c.cfg.Store.RunnableSends(ctx, c.cfg.Now(), 20)
	if err != nil {
		log.WarnContext(ctx, "cannot read due campaign sends", slog.String("error", err.Error()))
		return
	}
	for _, cs := range sends {
		if ctx.Err() != nil {
			return
		}
		leased(ctx, c.cfg.Jobs, "send:"+cs.ID, c.cfg.Owner, log, func(runCtx context.Context, token int64) {
			c.run(ctx, runCtx, logSend(log, cs), cs, token)
		})
	}
}

// errPaused ends an attempt whose delivery is down; the send goes on later.
var errPaused = errors.New("delivery refused every message of a page")

// run takes a send as far as it gets in one attempt.
func (c *Campaigns) run(ctx, runCtx context.Context, log *slog.Logger, cs *store.CampaignSend, token int64) {
	if err := c.cfg.Store.StartSend(runCtx, cs, token); err != nil {
		if !errors.Is(err, store.ErrFenced) {
			log.WarnContext(ctx, "cannot start a campaign send", slog.String("error", err.Error()))
		}
		return
	}
	err := c.advance(runCtx, log, cs)
	if errors.Is(err, store.ErrFenced) || (err != nil && runCtx.Err() != nil) {
		return // taken over, or shutting down: the send goes on from its last page
	}
	now := c.cfg.Now().UTC()
	switch {
	case err == nil:
	case isPermanent(err) || cs.Attempts+1 >= c.cfg.MaxAttempts:
		msg := err.Error()
		cs.Status, cs.FinishedAt, cs.Error = store.SendFailed, &now, &msg
		log.WarnContext(ctx, "campaign send failed", slog.String("error", msg))
	default:
		msg := err.Error()
		cs.Attempts++
		cs.Error = &msg
		cs.NextAttemptAt = now.Add(c.cfg.Backoff << (cs.Attempts - 1))
		log.WarnContext(ctx, "campaign send paused", slog.Int("attempt", cs.Attempts), slog.String("error", msg))
	}
	if err := c.cfg.Store.SaveSendProgress(context.WithoutCancel(ctx), cs); err != nil && !errors.Is(err, store.ErrFenced) {
		log.WarnContext(ctx, "cannot record a campaign send's progress", slog.String("error", err.Error()))
	}
	c.progress(ctx, cs)
}

// advance resolves the recipients if that is still to do, then delivers pages
// until the pass ends, the send is cancelled, or delivery is down.
func (c *Campaigns) advance(ctx context.Context, log *slog.Logger, cs *store.CampaignSend) error {
	if cancel, err := c.cfg.Store.CancelRequested(ctx, cs.ID); err != nil {
		return err
	} else if cancel {
		return c.finish(cs, store.SendCancelled, nil)
	}
	if !cs.Resolved {
		if err := c.resolve(ctx, cs); err != nil {
			return err
		}
	}
	if cs.RecipientCount == 0 {
		msg := "no recipients: no subscribed member with a valid address"
		return c.finish(cs, store.SendFailed, &msg)
	}
	d, err := c.deliverer(ctx, cs)
	if err != nil {
		return err
	}
	for cs.NextSeq < cs.RecipientCount {
		if cancel, err := c.cfg.Store.CancelRequested(ctx, cs.ID); err != nil {
			return err
		} else if cancel {
			return c.finish(cs, store.SendCancelled, nil)
		}
		to := min(cs.NextSeq+c.cfg.PageSize, cs.RecipientCount)
		refused, err := d.page(ctx, cs, cs.NextSeq, to)
		if err != nil {
			return err
		}
		cs.NextSeq = to
		cs.Error = nil
		if !refused {
			cs.Attempts = 0 // MaxAttempts counts attempts in a row that found delivery down
		}
		if err := c.cfg.Store.SaveSendProgress(ctx, cs); err != nil {
			return err
		}
		c.progress(ctx, cs)
		if refused {
			log.WarnContext(ctx, "delivery refused a whole page; the send pauses")
			return errPaused
		}
	}
	// The pass is over: another for the deferred recipients, or the end.
	if cs.Deferred > 0 && cs.Pass+1 < c.cfg.MaxPasses {
		cs.Pass++
		cs.NextSeq = 0
		cs.NextAttemptAt = c.cfg.Now().UTC().Add(c.cfg.Backoff << (cs.Pass - 1))
		return nil
	}
	if cs.Sent+cs.Unconfirmed == 0 {
		msg := "no message was accepted for delivery"
		if d.lastErr != "" {
			msg += ": " + d.lastErr
		}
		return c.finish(cs, store.SendFailed, &msg)
	}
	return c.finish(cs, store.SendSent, nil)
}

func (c *Campaigns) finish(cs *store.CampaignSend, status store.SendStatus, msg *string) error {
	now := c.cfg.Now().UTC()
	cs.Status, cs.FinishedAt, cs.Error = status, &now, msg
	return nil
}

func (c *Campaigns) progress(ctx context.Context, cs *store.CampaignSend) {
	if c.cfg.Progress != nil {
		_ = c.cfg.Progress.SendProgress(context.WithoutCancel(ctx), cs.Tenant, cs.ID)
	}
}

// resolve numbers a send's recipients: the subscribed members of its group and
// lists, once per address, leaving out unsubscribed, unconfirmed and invalid
// addresses (counted by reason). An interrupted resolution starts over.
func (c *Campaigns) resolve(ctx context.Context, cs *store.CampaignSend) error {
	if err := c.cfg.Store.ResetRecipients(ctx, cs.ID); err != nil {
		return err
	}
	r := &resolver{st: c.cfg.Store, cs: cs, seen: map[string]bool{}, excluded: map[string]int{}, pageSize: c.cfg.PageSize}
	if cs.GroupID != "" {
		after := ""
		for {
			subs, more, err := c.cfg.Store.SubscribersPage(ctx, cs.Tenant, cs.GroupID, after, c.cfg.PageSize)
			if err != nil {
				return err
			}
			if err := r.add(ctx, subs); err != nil {
				return err
			}
			if !more {
				break
			}
			after = subs[len(subs)-1].ID
		}
	}
	for _, id := range cs.ListIDs {
		l, err := c.cfg.Store.List(ctx, cs.Tenant, id)
		if errors.Is(err, store.ErrNotFound) {
			r.excluded["listGone"]++
			continue
		}
		if err != nil {
			return err
		}
		err = c.cfg.Store.EachListMember(ctx, l, c.cfg.PageSize, func(ms []store.ListMember) error {
			ids := make([]string, 0, len(ms))
			for _, m := range ms {
				if m.SubscriberID != "" {
					ids = append(ids, m.SubscriberID)
				}
			}
			byID, err := c.cfg.Store.SubscribersByIDs(ctx, cs.Tenant, ids)
			if err != nil {
				return err
			}
			subs := make([]*store.Subscriber, 0, len(byID))
			for _, id := range ids {
				if s := byID[id]; s != nil {
					subs = append(subs, s)
				}
			}
			return r.add(ctx, subs)
		})
		if err != nil {
			return err
		}
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	now := c.cfg.Now().UTC()
	cs.Resolved, cs.RecipientCount, cs.Excluded = true, r.seq, r.excluded
	cs.Status, cs.StartedAt, cs.NextSeq = store.SendSending, &now, 0
	return c.cfg.Store.SaveSendProgress(ctx, cs)
}

type resolver struct {
	st       *store.Store
	cs       *store.CampaignSend
	seen     map[string]bool
	excluded map[string]int
	page     []*store.CampaignRecipient
	pageSize int
	seq      int
}

func (r *resolver) add(ctx context.Context, subs []*store.Subscriber) error {
	for _, s := range subs {
		switch {
		case s.RemovedAt != nil:
			r.excluded["leftList"]++
		case s.SubscriptionState != store.Subscribed:
			r.excluded["unsubscribed"]++
		case s.AddressInvalid:
			r.excluded["bounced"]++
		case s.DoubleOptInStatus == store.OptInPending:
			r.excluded["pendingOptIn"]++
		case r.seen[s.Email]:
			r.excluded["duplicate"]++
		default:
			r.seen[s.Email] = true
			r.page = append(r.page, &store.CampaignRecipient{
				Tenant: r.cs.Tenant, SendID: r.cs.ID, Seq: r.seq, Email: s.Email, SubscriberID: s.ID, GroupID: s.GroupID, CRMRecord: s.CRMRecord,
				Fields: s.Fields,
			})
			r.seq++
			if len(r.page) >= r.pageSize {
				if err := r.flush(ctx); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (r *resolver) flush(ctx context.Context) error {
	err := r.st.AddRecipients(ctx, r.page)
	r.page = r.page[:0]
	return err
}

// deliverer sends the pages of one send through one sender, at the connection's rate.
type deliverer struct {
	c       *Campaigns
	sender  mail.Sender
	pace    *pacer
	lastErr string
}

func (c *Campaigns) deliverer(ctx context.Context, cs *store.CampaignSend) (*deliverer, error) {
	d := &deliverer{c: c, sender: c.cfg.SMTP, pace: &pacer{}}
	if cs.ConnectionID != "" {
		conn, err := c.cfg.Store.ConnectionForWebhook(ctx, cs.ConnectionID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, Permanent(errors.New("the send's connection no longer exists"))
		}
		if err != nil {
			return nil, err
		}
		if rate := conn.Campaigns.SendRatePerMinute; rate > 0 {
			d.pace.every = time.Minute / time.Duration(rate)
		}
		if conn.Campaigns.SendingEngineURL != "" {
			secret, err := c.cfg.Store.SendingEngineSecret(conn)
			if err != nil {
				return nil, Permanent(fmt.Errorf("the sending engine's secret cannot be opened: %w", err))
			}
			d.sender = c.engine(conn, secret)
		}
	}
	if d.sender == nil {
		return nil, Permanent(ErrNoDelivery)
	}
	return d, nil
}

func (c *Campaigns) engine(conn *store.Connection, secret string) mail.Sender {
	key := conn.ID + "|" + conn.Campaigns.SendingEngineURL + "|" + secret
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.engines[key]; ok {
		return s
	}
	s := c.cfg.Engines(conn, secret)
	c.engines[key] = s
	return s
}

// page delivers recipients from..to-1 of the current pass and counts their
// outcomes into cs. A recipient is claimed before its message is handed to the
// sender; one found claimed but without an outcome (an attempt died while
// sending it) is not sent again and counts as unconfirmed. refused reports that
// the sender refused every message it was given for a transient reason.
func (d *deliverer) page(ctx context.Context, cs *store.CampaignSend, from, to int) (refused bool, err error) {
	st := d.c.cfg.Store
	rs, err := st.Recipients(ctx, cs.ID, from, to)
	if err != nil {
		return false, err
	}
	known := map[string]*store.CampaignMessage{}
	fields := make(map[string]map[string]any, len(rs))
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.Message
		fields[r.Message] = r.Fields
	}
	if cs.Pass > 0 || from < cs.ClaimedTo {
		// Messages of this page may have been claimed before: look them up. A
		// page past ClaimedTo has none, which saves the lookups on the way.
		if known, err = st.Messages(ctx, ids); err != nil {
			return false, err
		}
	}
	try := cs.Pass + 1 // a message handled in this pass has Tries == try
	var fresh, retry, settle, work []*store.CampaignMessage
	for _, r := range rs {
		m := known[r.Message]
		switch {
		case m == nil:
			if cs.Pass > 0 {
				continue // not claimed in the first pass: it was not a recipient then
			}
			m = &store.CampaignMessage{
				ID: r.Message, Tenant: r.Tenant, ConnectionID: cs.ConnectionID, SendID: cs.ID, Recipient: r.ID, Email: r.Email,
				SubscriberID: r.SubscriberID, GroupID: r.GroupID, CRMRecord: r.CRMRecord, Tries: try, At: d.c.cfg.Now().UTC(),
			}
			fresh = append(fresh, m)
		case m.State == store.MessageDeferred && m.Tries < try:
			m.State, m.Tries, m.At = store.MessageClaimed, try, d.c.cfg.Now().UTC()
			retry = append(retry, m)
		case m.State == store.MessageClaimed && m.Tries == try:
			m.State, m.Error = store.MessageUnconfirmed, "an earlier attempt stopped while sending this message; not sent again"
			settle = append(settle, m)
		case m.Tries == try:
			settle = append(settle, m) // handled before a restart: counted below
		}
	}
	if len(fresh) > 0 && to > cs.ClaimedTo {
		// Recorded before the claims, so a later attempt knows to look for them.
		cs.ClaimedTo = to
		if err := st.SaveSendProgress(ctx, cs); err != nil {
			return false, err
		}
	}
	claimed, err := st.ClaimMessages(ctx, fresh)
	if err != nil {
		return false, err
	}
	for i, m := range fresh {
		if claimed[i] {
			work = append(work, m)
		}
	}
	if err := st.RecordMessages(ctx, retry); err != nil { // the claim of a retry
		return false, err
	}
	work = append(work, retry...)
	transient := d.sendAll(ctx, cs, work, fields)
	if ctx.Err() != nil {
		// Stopping: record the outcomes known (the next attempt counts them);
		// the messages still in the sender's hands keep their claims.
		var known []*store.CampaignMessage
		for _, m := range work {
			if m.State != store.MessageClaimed {
				known = append(known, m)
			}
		}
		_ = st.RecordMessages(context.WithoutCancel(ctx), known)
		return false, ctx.Err()
	}
	if err := st.RecordMessages(ctx, append(work, settle...)); err != nil {
		return false, err
	}
	if err := d.c.bounced(ctx, work); err != nil {
		return false, err
	}
	for _, m := range append(work, settle...) {
		count(cs, m)
	}
	return len(work) > 0 && transient == len(work), nil
}

// bounced queues a hard bounce reaction for each message the SMTP server refused
// for good, so the address is marked invalid and the CRM hears of it as of any
// other bounce. The events' ids come from the messages: a page done again queues
// each once.
func (c *Campaigns) bounced(ctx context.Context, ms []*store.CampaignMessage) error {
	var evs []*store.InboxEvent
	for _, m := range ms {
		if m.State != store.MessageBounced {
			continue
		}
		body, err := json.Marshal(store.ReactionEvent{
			Type: "bounce", BounceType: "hard", CampaignSendID: m.SendID, SubscriberID: m.SubscriberID, OccurredAt: m.At, Message: m.ID,
		})
		if err != nil {
			return err
		}
		evs = append(evs, &store.InboxEvent{
			ID: "bounce-" + m.ID, Tenant: m.Tenant, ConnectionID: m.ConnectionID, Source: SourceReaction,
			Message: "bounce", Entity: EntityReaction, RecordID: m.SubscriberID, Body: string(body), ReceivedAt: m.At,
		})
	}
	if len(evs) == 0 {
		return nil
	}
	if _, err := c.cfg.Store.AddInboxEvents(ctx, evs); err != nil {
		return err
	}
	if c.cfg.Publisher != nil {
		entries := make([]queue.Entry, len(evs))
		for i, ev := range evs {
			entries[i] = queue.Entry{EventID: ev.ID, Key: ev.PartitionKey()}
		}
		_ = c.cfg.Publisher.Publish(ctx, entries...)
	}
	return nil
}

// count adds a message handled in this pass to the send's counts.
func count(cs *store.CampaignSend, m *store.CampaignMessage) {
	if m.Tries > 1 {
		cs.Deferred-- // it was counted as deferred by the pass before
	}
	switch m.State {
	case store.MessageSent:
		cs.Sent++
	case store.MessageBounced:
		cs.Bounced++
	case store.MessageDeferred:
		cs.Deferred++
	case store.MessageFailed:
		cs.Failed++
	case store.MessageUnconfirmed:
		cs.Unconfirmed++
	}
}

// sendAll hands the messages to the sender, Workers at a time and at the
// connection's pace, and sets each one's outcome; it answers how many were
// refused for a transient reason.
func (d *deliverer) sendAll(ctx context.Context, cs *store.CampaignSend, ms []*store.CampaignMessage, fields map[string]map[string]any) (transient int) {
	lastPass := cs.Pass+1 >= d.c.cfg.MaxPasses
	var mu sync.Mutex
	jobs := make(chan *store.CampaignMessage)
	var wg sync.WaitGroup
	for range min(d.c.cfg.Workers, len(ms)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range jobs {
				err := d.sender.Send(ctx, d.c.message(cs, m, fields[m.ID]))
				m.At = d.c.cfg.Now().UTC()
				switch {
				case err == nil:
					m.State, m.Error = store.MessageSent, ""
				case mail.IsHardBounce(err):
					m.State, m.Error = store.MessageBounced, err.Error()
				case ctx.Err() != nil:
					// Shutting down: the claim stands, the outcome is unknown.
					continue
				default:
					m.State, m.Error = store.MessageDeferred, err.Error()
					if lastPass || isRefused(err) {
						m.State = store.MessageFailed
					}
					mu.Lock()
					transient++
					d.lastErr = err.Error()
					mu.Unlock()
				}
				if d.c.cfg.Metrics != nil {
					d.c.cfg.Metrics.CampaignMessage(strings.ToLower(string(m.State)))
				}
			}
		}()
	}
	for _, m := range ms {
		if d.pace.wait(ctx) != nil {
			break
		}
		jobs <- m
	}
	close(jobs)
	wg.Wait()
	return transient
}

func isRefused(err error) bool {
	var r *mail.Refused
	return errors.As(err, &r)
}

// message renders one recipient's message: placeholders filled from the
// subscriber, links through the click route, an open pixel and the one-click
// unsubscribe link, all carrying signed tokens of the random message id.
func (c *Campaigns) message(cs *store.CampaignSend, m *store.CampaignMessage, fields map[string]any) *mail.Message {
	var id [16]byte
	_, _ = hex.Decode(id[:], []byte(m.ID))
	unsub := c.cfg.PublicURL + "/u/" + c.cfg.Tokens.Sign(mail.KindUnsubscribe, id, 0)
	lookup := mail.RecipientValues(m.Email, fields, map[string]string{"unsubscribeUrl": unsub})
	out := &mail.Message{
		ID: m.ID, FromName: cs.SenderName, FromAddr: cs.SenderEmail, To: m.Email,
		Subject: mail.Personalize(cs.Subject, lookup, false), UnsubscribeURL: unsub,
	}
	if cs.HTMLBody != "" {
		index := make(map[string]int, len(cs.Links))
		for i, l := range cs.Links {
			index[l] = i
		}
		html := mail.Track(cs.HTMLBody, func(url string) (string, bool) {
			i, ok := index[url]
			if !ok {
				return "", false
			}
			return c.cfg.PublicURL + "/t/c/" + c.cfg.Tokens.Sign(mail.KindClick, id, i), true
		}, c.cfg.PublicURL+"/t/o/"+c.cfg.Tokens.Sign(mail.KindOpen, id, 0))
		out.HTML = mail.Personalize(html, lookup, true)
	}
	text := cs.TextBody
	if text == "" && cs.HTMLBody != "" {
		// The text part shows the links themselves, filled and escaped as the
		// click route fills them.
		text = mail.TextFromHTML(mail.Track(cs.HTMLBody, func(url string) (string, bool) {
			return mail.LinkURL(url, lookup)
		}, ""))
	}
	if text != "" {
		out.Text = mail.Personalize(text, lookup, false)
	}
	return out
}

// bodyLinks are the links of an HTML body that clicks are tracked for.
func bodyLinks(html string) []string {
	if html == "" {
		return nil
	}
	return mail.Links(html)
}

// pacer spaces messages at most every apart; zero is no pace.
type pacer struct {
	every time.Duration
	next  time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	if p.every <= 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.After(now) {
		t := time.NewTimer(p.next.Sub(now))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now = p.next
	}
	p.next = now.Add(p.every)
	return nil
}
