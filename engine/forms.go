package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"time"

	"crmsync/mail"
	"crmsync/queue"
	"crmsync/store"
)

// FormsConfig configures the service behind the public sign-up forms.
type FormsConfig struct {
	// Store holds forms, subscribers, requests and the consent ledger; required.
	Store *store.Store
	// Jobs let one instance of the fleet expire unconfirmed sign-ups at a time;
	// required.
	Jobs *queue.Jobs
	// Tokens sign the confirmation links; required.
	Tokens *mail.Tokens
	// PublicURL is how mail clients reach this service (CRMSYNC_PUBLIC_URL); required.
	PublicURL string
	// Publisher announces confirmed subscribers of CRM-synced groups to the
	// engine, which brings them to the CRM; required.
	Publisher interface {
		Publish(ctx context.Context, entries ...queue.Entry) error
	}
	// SMTP delivers the confirmation e-mails (CRMSYNC_SMTP_URL); nil refuses the
	// submissions of double opt-in forms, with that reason.
	SMTP mail.Sender
	// Owner names this instance in the expiry's lease; default host-pid-random.
	Owner string
	// Interval is how often unconfirmed sign-ups are looked for; default 1 min.
	Interval time.Duration
	// SendTimeout bounds the delivery of one confirmation e-mail, which the
	// submission waits for; default 20 s.
	SendTimeout time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// ErrNoConfirmations is why a double opt-in form takes no submission: its
// confirmation e-mail could not be sent.
var ErrNoConfirmations = errors.New("double opt-in forms need SMTP delivery (CRMSYNC_SMTP_URL is unset) to send their confirmation e-mails")

// Forms does what sign-up forms ask: a submission adds or updates a subscriber of
// the form's group, at once or after the double opt-in's confirmation; the
// confirmation link makes it CONFIRMED and SUBSCRIBED; unconfirmed sign-ups
// expire. Every consent change goes into the consent ledger, and the subscribers
// of CRM-synced groups reach the CRM through the Outbox once they have consented.
//
// An address the group has already keeps its state until the person confirms:
// re-submitting a confirmed, subscribed address sends nothing and changes nothing;
// an unsubscribed one that signs up again stays unsubscribed until it confirms.
type Forms struct {
	cfg    FormsConfig
	outbox *Outbox
	loop   loop
}

// NewForms validates cfg and returns a service whose expiry has not started.
func NewForms(cfg FormsConfig) (*Forms, error) {
	if cfg.Store == nil || cfg.Jobs == nil || cfg.Tokens == nil || cfg.PublicURL == "" || cfg.Publisher == nil {
		return nil, errors.New("forms: Store, Jobs, Tokens, PublicURL and Publisher are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	cfg.Owner = cmp.Or(cfg.Owner, workerName())
	cfg.Interval = cmp.Or(cfg.Interval, time.Minute)
	cfg.SendTimeout = cmp.Or(cfg.SendTimeout, 20*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Forms{cfg: cfg, outbox: &Outbox{Store: cfg.Store, Publisher: cfg.Publisher, Now: cfg.Now, Logger: cfg.Logger}}, nil
}

// CanConfirm reports whether confirmation e-mails can be sent, which double
// opt-in forms need.
func (f *Forms) CanConfirm() bool { return f.cfg.SMTP != nil }

// requester is who sent a submission or followed a link, as far as known.
type requester struct{ ip, userAgent string }

// Submit applies a checked submission of form from the given IP address and user
// agent. pending reports that a confirmation e-mail went out and the sign-up
// waits for it. A submission whose confirmation e-mail could not be sent leaves
// nothing behind; an address that refuses mail for good is a store.FieldErrors
// on the form's e-mail field.
func (f *Forms) Submit(ctx context.Context, form *store.Form, in *store.Submission, ip, userAgent string) (pending bool, err error) {
	if form.DoubleOptIn && f.cfg.SMTP == nil {
		return false, ErrNoConfirmations
	}
	st := f.cfg.Store
	g, err := st.Group(ctx, form.Tenant, form.GroupID)
	if err != nil {
		return false, err
	}
	who := requester{ip, userAgent}
	now := f.cfg.Now().UTC()
	// A new address is subscribed at once, or stays PENDING until confirmed.
	fresh := store.SignUp{Fields: in.Fields, Language: in.Language, State: store.Subscribed, OptIn: form.DoubleOptInStatus}
	if form.DoubleOptIn {
		fresh.OptIn = store.OptInPending
	}
	sub, err := st.SubscriberByEmail(ctx, g.Tenant, g.ID, in.Email)
	created := false
	if errors.Is(err, store.ErrNotFound) {
		var existing bool
		sub, existing, err = st.AddSubscriber(ctx, g, in.Email, fresh)
		created = !existing
	}
	if err != nil {
		return false, err
	}
	if form.DoubleOptIn {
		if !created && sub.SubscriptionState == store.Subscribed && sub.DoubleOptInStatus == store.OptInConfirmed {
			return false, nil // confirmed already: no second e-mail, no change
		}
		return true, f.requestConfirmation(ctx, form, sub, in, created, who, now)
	}
	was := sub.SubscriptionState
	if !created {
		change := fresh
		if sub.DoubleOptInStatus == store.OptInConfirmed {
			change.OptIn = "" // a confirmation is never undone
		}
		if err := st.ApplySignUp(ctx, sub, change); err != nil {
			return false, err
		}
	}
	if created || was != store.Subscribed {
		ev := formConsent(sub, form, store.ConsentSubscribed, store.SourceForm, now, who)
		if err := st.AppendConsent(ctx, ev); err != nil {
			return false, err
		}
	}
	return false, f.outbox.SubscribersChanged(ctx, sub.Tenant, sub.GroupID, []string{sub.ID})
}

// requestConfirmation stores a double opt-in request for sub and sends its
// e-mail. When the e-mail does not go out, the request is dropped, and so is a
// subscriber the submission created.
func (f *Forms) requestConfirmation(ctx context.Context, form *store.Form, sub *store.Subscriber, in *store.Submission, created bool, who requester, now time.Time) error {
	st := f.cfg.Store
	raw := mail.NewMessageID()
	c := &store.Confirmation{
		ID: mail.FormatMessageID(raw), Tenant: sub.Tenant, FormID: form.ID, GroupID: sub.GroupID, SubscriberID: sub.ID, Email: sub.Email,
		Fields: in.Fields, Language: in.Language, TextVersion: form.ConsentVersion,
		CreatedAt: now, ExpiresAt: now.Add(time.Duration(form.PendingHours) * time.Hour),
	}
	err := st.AddConfirmation(ctx, c)
	if err == nil {
		link := f.cfg.PublicURL + "/forms/confirm?token=" + f.cfg.Tokens.Sign(mail.KindConfirm, raw, 0)
		sendCtx, cancel := context.WithTimeout(ctx, f.cfg.SendTimeout)
		err = f.cfg.SMTP.Send(sendCtx, confirmationMessage(form, c, sub.Fields, link))
		cancel()
		if err != nil {
			_ = st.DeleteConfirmation(context.WithoutCancel(ctx), c.ID)
			err = fmt.Errorf("send the confirmation e-mail: %w", err)
		}
	}
	if err != nil {
		if created {
			_, _ = st.ExpireSubscriber(context.WithoutCancel(ctx), sub)
		}
		if mail.IsHardBounce(err) {
			return store.FieldErrors{form.EmailField(): "this address does not accept e-mail"}
		}
		return err
	}
	ev := formConsent(sub, form, store.ConsentRequested, store.SourceForm, now, who)
	ev.TokenID = c.ID
	if err := st.AppendConsent(ctx, ev); err != nil {
		// The e-mail is out, so the sign-up stands; the ledger misses its request.
		f.cfg.Logger.ErrorContext(ctx, "consent request not recorded", slog.String("subscriber", sub.ID), slog.String("token", c.ID), slog.String("error", err.Error()))
	}
	return nil
}

var confirmURLPlaceholder = regexp.MustCompile(`\{\{\s*confirmUrl\s*\}\}`)

// confirmationMessage renders a request's e-mail: placeholders filled from the
// submission (then the subscriber), and the link appended to a body that does
// not place it.
func confirmationMessage(form *store.Form, c *store.Confirmation, subFields map[string]any, link string) *mail.Message {
	e := form.Confirmation
	fields := maps.Clone(subFields)
	if fields == nil {
		fields = map[string]any{}
	}
	maps.Copy(fields, c.Fields)
	lookup := mail.RecipientValues(c.Email, fields, map[string]string{"confirmUrl": link})
	m := &mail.Message{ID: c.ID, FromName: e.SenderName, FromAddr: e.SenderEmail, To: c.Email, Subject: mail.Personalize(e.Subject, lookup, false)}
	html, text := e.HTMLBody, e.TextBody
	if text == "" && html != "" {
		text = mail.TextFromHTML(html)
	}
	if html != "" {
		if !confirmURLPlaceholder.MatchString(html) {
			const p = `<p><a href="{{confirmUrl}}">{{confirmUrl}}</a></p>`
			if i := strings.LastIndex(strings.ToLower(html), "</body>"); i >= 0 {
				html = html[:i] + p + html[i:]
			} else {
				html += p
			}
		}
		m.HTML = mail.Personalize(html, lookup, true)
	}
	if text != "" {
		if !confirmURLPlaceholder.MatchString(text) {
			text = strings.TrimRight(text, "\n") + "\n\n{{confirmUrl}}\n"
		}
		m.Text = mail.Personalize(text, lookup, false)
	}
	return m
}

// Confirm follows a confirmation link from the given IP address and user agent:
// the subscriber becomes CONFIRMED and SUBSCRIBED with the values its form
// carried, and reaches the CRM when its group is CRM-synced. It answers the form
// (for its ConfirmedURL). A token that is not a confirmation link is
// mail.ErrBadToken; one used before store.ErrTokenUsed; one expired, or whose
// sign-up is gone, store.ErrTokenExpired. Nothing changes then.
func (f *Forms) Confirm(ctx context.Context, token, ip, userAgent string) (*store.Form, error) {
	kind, raw, _, err := f.cfg.Tokens.Verify(token)
	if err != nil || kind != mail.KindConfirm {
		return nil, mail.ErrBadToken
	}
	id := mail.FormatMessageID(raw)
	st := f.cfg.Store
	c, err := st.Confirmation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		used, err := st.ConfirmationUsed(ctx, id)
		switch {
		case err != nil:
			return nil, err
		case used:
			return nil, store.ErrTokenUsed
		}
		return nil, store.ErrTokenExpired
	}
	if err != nil {
		return nil, err
	}
	now := f.cfg.Now().UTC()
	if !now.Before(c.ExpiresAt) {
		return nil, store.ErrTokenExpired
	}
	if first, err := st.UseConfirmation(ctx, c); err != nil || !first {
		return nil, cmp.Or(err, store.ErrTokenUsed)
	}
	form, err := f.confirm(ctx, c, requester{ip, userAgent}, now)
	if err != nil && !errors.Is(err, store.ErrTokenExpired) {
		// Not applied: the link works again, so the person can try once more.
		_ = st.ReleaseConfirmation(context.WithoutCancel(ctx), id)
	}
	return form, err
}

func (f *Forms) confirm(ctx context.Context, c *store.Confirmation, who requester, now time.Time) (*store.Form, error) {
	st := f.cfg.Store
	form, err := st.FormByID(ctx, c.FormID)
	if errors.Is(err, store.ErrNotFound) {
		form, err = &store.Form{ID: c.FormID, Tenant: c.Tenant, GroupID: c.GroupID}, nil // deleted since: the sign-up still counts
	}
	if err != nil {
		return nil, err
	}
	sub, err := st.Subscriber(ctx, c.Tenant, c.SubscriberID)
	if err == nil {
		err = st.ApplySignUp(ctx, sub, store.SignUp{
			Fields: c.Fields, Language: c.Language, State: store.Subscribed, OptIn: store.OptInConfirmed, Verified: true,
		})
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.ErrTokenExpired // the subscriber was deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	if err := f.outbox.SubscribersChanged(ctx, sub.Tenant, sub.GroupID, []string{sub.ID}); err != nil {
		return nil, err
	}
	ev := formConsent(sub, form, store.ConsentConfirmed, store.SourceConfirmation, now, who)
	ev.TokenID, ev.TextVersion = c.ID, c.TextVersion
	if err := st.AppendConsent(ctx, ev); err != nil {
		return nil, err
	}
	// The subscriber's other requests are moot now; one left behind expires
	// without effect.
	if err := st.ForgetConfirmations(ctx, sub.Tenant, sub.ID); err != nil {
		f.cfg.Logger.WarnContext(ctx, "confirmed subscriber's other requests not removed", slog.String("subscriber", sub.ID), slog.String("error", err.Error()))
	}
	return form, nil
}

// formConsent is a ledger entry about sub made through form.
func formConsent(sub *store.Subscriber, form *store.Form, action store.ConsentAction, source store.ConsentSource, at time.Time, who requester) *store.ConsentEvent {
	ev := consentOf(sub, action, source, at)
	ev.IP, ev.UserAgent, ev.FormID, ev.TextVersion = who.ip, who.userAgent, form.ID, form.ConsentVersion
	return ev
}

// Start expires unconfirmed sign-ups every Interval until Stop; it returns at once.
func (f *Forms) Start(ctx context.Context) { f.loop.every(ctx, f.cfg.Interval, f.Tick) }

// Stop waits for the expiry in hand, or for ctx.
func (f *Forms) Stop(ctx context.Context) error { return f.loop.stop(ctx, "forms") }

// expiryBatch is how many expired requests one read takes.
const expiryBatch = 100

// Tick expires the sign-ups whose confirmation did not come in time, when this
// instance gets the job's lease: a subscriber the sign-up created is removed
// (with its address claim, as DeleteSubscriber does), one that existed before is
// left as it is, and the ledger records the expiry and why.
func (f *Forms) Tick(ctx context.Context) {
	log := f.cfg.Logger.With(slog.String("component", "forms"))
	leased(ctx, f.cfg.Jobs, "forms:expiry", f.cfg.Owner, log, func(ctx context.Context, _ int64) {
		if err := f.expire(ctx); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "cannot expire unconfirmed sign-ups", slog.String("error", err.Error()))
		}
	})
}

func (f *Forms) expire(ctx context.Context) error {
	st := f.cfg.Store
	now := f.cfg.Now().UTC()
	for {
		cs, err := st.ExpiredConfirmations(ctx, now, expiryBatch)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if err := f.expireOne(ctx, c, now); err != nil {
				return err
			}
		}
		if len(cs) < expiryBatch {
			break
		}
	}
	return st.PruneConfirmationUses(ctx, now)
}

// expireOne ends one expired request. A request whose link was used, that a
// newer one of the same subscriber replaces, or whose subscriber has confirmed or
// gone since, is simply forgotten.
func (f *Forms) expireOne(ctx context.Context, c *store.Confirmation, now time.Time) error {
	st := f.cfg.Store
	used, err := st.ConfirmationUsed(ctx, c.ID)
	if err != nil {
		return err
	}
	live, err := st.LiveConfirmations(ctx, c.Tenant, c.SubscriberID, now)
	if err != nil {
		return err
	}
	sub, err := st.Subscriber(ctx, c.Tenant, c.SubscriberID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return st.DeleteConfirmation(ctx, c.ID)
	case err != nil:
		return err
	case used || live > 0 || sub.SubscriptionState == store.Subscribed && sub.DoubleOptInStatus == store.OptInConfirmed:
		return st.DeleteConfirmation(ctx, c.ID)
	}
	ev := consentOf(sub, store.ConsentExpired, store.SourceForm, now)
	ev.FormID, ev.TokenID, ev.TextVersion = c.FormID, c.ID, c.TextVersion
	hours := int(c.ExpiresAt.Sub(c.CreatedAt).Round(time.Hour).Hours())
	ev.Detail = fmt.Sprintf("not confirmed within %d hours; the subscriber is unchanged", hours)
	if sub.DoubleOptInStatus == store.OptInPending {
		removed, err := st.ExpireSubscriber(ctx, sub)
		if err != nil {
			return err
		}
		if !removed {
			return st.DeleteConfirmation(ctx, c.ID) // confirmed or deleted meanwhile
		}
		ev.Detail = fmt.Sprintf("not confirmed within %d hours; the subscriber was removed", hours)
	}
	if err := st.AppendConsent(ctx, ev); err != nil {
		return err
	}
	return st.DeleteConfirmation(ctx, c.ID)
}
