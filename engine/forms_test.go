package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crmsync/engine"
	"crmsync/mail"
	"crmsync/queue"
	"crmsync/queue/queuetest"
	"crmsync/store"
	"crmsync/store/storetest"
)

// outbox is a mail.Sender that keeps what it is given, or fails as told.
type outbox struct {
	mu   sync.Mutex
	msgs []*mail.Message
	fail error
}

func (o *outbox) Send(_ context.Context, m *mail.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.msgs = append(o.msgs, m)
	return nil
}

func (o *outbox) Close() error { return nil }

func (o *outbox) sent() []*mail.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*mail.Message(nil), o.msgs...)
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, ...queue.Entry) error { return nil }

// formFixture is a store with a group, a double opt-in form of it and the Forms
// service, on a clock the test moves.
type formFixture struct {
	t     *testing.T
	st    *store.Store
	group *store.Group
	form  *store.Form
	forms *engine.Forms
	mail  *outbox
	toks  *mail.Tokens

	mu  sync.Mutex
	now time.Time
}

func newFormFixture(t *testing.T, opts ...func(*engine.FormsConfig)) *formFixture {
	t.Helper()
	f := &formFixture{t: t, mail: &outbox{}, now: time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)}
	f.st = storetest.Open(t, func(c *store.Config) { c.Now = f.clock })
	ctx := context.Background()
	var err error
	if f.group, err = f.st.CreateGroup(ctx, "acme", store.GroupInput{Name: "News"}); err != nil {
		t.Fatal(err)
	}
	f.form, err = f.st.CreateForm(ctx, "acme", store.FormInput{
		GroupID: f.group.ID, Name: "Newsletter", DoubleOptIn: true, PendingHours: 72, ConsentText: "Yes, the newsletter.", ConsentVersion: "v1",
		Fields: []store.FormField{
			{Name: "email", Type: store.FieldEmail, SubscriberField: "email"},
			{Name: "firstName", Type: store.FieldText, SubscriberField: "fields.firstName"},
		},
		Confirmation: &store.FormEmail{Subject: "Confirm, {{fields.firstName}}", HTMLBody: "<p>Hello {{fields.firstName}}</p>", SenderName: "Shop", SenderEmail: "news@shop.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rdb, keys := queuetest.Open(t)
	if f.toks, err = mail.NewTokens([]byte(strings.Repeat("k", 32))); err != nil {
		t.Fatal(err)
	}
	cfg := engine.FormsConfig{
		Store: f.st, Jobs: queue.NewJobs(rdb.Client, keys, 5*time.Second), Tokens: f.toks, PublicURL: "https://crmsync.test/",
		Publisher: nopPublisher{}, SMTP: f.mail, Now: f.clock, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if f.forms, err = engine.NewForms(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *formFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *formFixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// submit posts an address and a first name from one browser.
func (f *formFixture) submit(email, firstName string) (bool, error) {
	in, errs := f.form.Check(map[string]string{"email": email, "firstName": firstName})
	if len(errs) > 0 {
		f.t.Fatal(errs)
	}
	return f.forms.Submit(context.Background(), f.form, in, "192.0.2.7", "Firefox/140")
}

var confirmLink = regexp.MustCompile(`https://crmsync\.test/forms/confirm\?token=([A-Za-z0-9_-]+)`)

// token is the confirmation token of the last message sent.
func (f *formFixture) token() string {
	f.t.Helper()
	msgs := f.mail.sent()
	if len(msgs) == 0 {
		f.t.Fatal("no confirmation e-mail was sent")
	}
	m := confirmLink.FindStringSubmatch(msgs[len(msgs)-1].Text)
	if m == nil {
		f.t.Fatalf("no confirmation link in %q", msgs[len(msgs)-1].Text)
	}
	return m[1]
}

func (f *formFixture) subscriber(email string) *store.Subscriber {
	f.t.Helper()
	s, err := f.st.SubscriberByEmail(context.Background(), "acme", f.group.ID, email)
	if err != nil {
		f.t.Fatalf("subscriber %s: %v", email, err)
	}
	return s
}

// ledger is the actions of a subscriber's consent history.
func (f *formFixture) ledger(subscriberID string) ([]store.ConsentAction, []*store.ConsentEvent) {
	f.t.Helper()
	evs, _, err := f.st.ConsentHistory(context.Background(), "acme", subscriberID, "", 100)
	if err != nil {
		f.t.Fatal(err)
	}
	actions := make([]store.ConsentAction, len(evs))
	for i, ev := range evs {
		actions[i] = ev.Action
	}
	return actions, evs
}

func TestDoubleOptInStaysPendingUntilTheLinkIsFollowed(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	ctx := context.Background()
	pending, err := f.submit(" Ann@Example.de ", "Ann")
	if err != nil || !pending {
		t.Fatalf("submit: pending %v, %v", pending, err)
	}
	sub := f.subscriber("ann@example.de")
	if sub.DoubleOptInStatus != store.OptInPending || sub.Fields["firstName"] != "Ann" {
		t.Fatalf("after the submission: %+v", sub)
	}
	msgs := f.mail.sent()
	if len(msgs) != 1 || msgs[0].To != "ann@example.de" || msgs[0].Subject != "Confirm, Ann" || msgs[0].FromAddr != "news@shop.test" {
		t.Fatalf("confirmation e-mail: %+v", msgs)
	}
	if !strings.Contains(msgs[0].HTML, "<p>Hello Ann</p>") || !confirmLink.MatchString(msgs[0].HTML) {
		t.Errorf("the HTML body lacks the greeting or the appended link:\n%s", msgs[0].HTML)
	}
	token := f.token()

	f.advance(time.Hour)
	form, err := f.forms.Confirm(ctx, token, "192.0.2.8", "Thunderbird")
	if err != nil || form.ID != f.form.ID {
		t.Fatalf("confirm: %+v, %v", form, err)
	}
	sub = f.subscriber("ann@example.de")
	if sub.DoubleOptInStatus != store.OptInConfirmed || sub.SubscriptionState != store.Subscribed {
		t.Errorf("after the confirmation: %s %s", sub.DoubleOptInStatus, sub.SubscriptionState)
	}
	actions, evs := f.ledger(sub.ID)
	if !slices.Equal(actions, []store.ConsentAction{store.ConsentRequested, store.ConsentConfirmed}) {
		t.Fatalf("ledger %v", actions)
	}
	req, conf := evs[0], evs[1]
	if req.Source != store.SourceForm || req.IP != "192.0.2.7" || req.UserAgent != "Firefox/140" || req.FormID != f.form.ID || req.TextVersion != "v1" || req.TokenID == "" {
		t.Errorf("request entry: %+v", req)
	}
	if conf.Source != store.SourceConfirmation || conf.IP != "192.0.2.8" || conf.TokenID != req.TokenID || conf.TextVersion != "v1" || !conf.At.Equal(f.clock()) {
		t.Errorf("confirmation entry: %+v", conf)
	}

	// The link works once; forged and foreign tokens do nothing.
	if _, err := f.forms.Confirm(ctx, token, "", ""); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("second use: %v, want ErrTokenUsed", err)
	}
	swap := map[bool]string{true: "B", false: "A"}[token[5] == 'A']
	forged := token[:5] + swap + token[6:]
	if _, err := f.forms.Confirm(ctx, forged, "", ""); !errors.Is(err, mail.ErrBadToken) {
		t.Errorf("forged token: %v, want ErrBadToken", err)
	}
	unsub := f.toks.Sign(mail.KindUnsubscribe, mail.NewMessageID(), 0)
	if _, err := f.forms.Confirm(ctx, unsub, "", ""); !errors.Is(err, mail.ErrBadToken) {
		t.Errorf("an unsubscribe token: %v, want ErrBadToken", err)
	}
	unknown := f.toks.Sign(mail.KindConfirm, mail.NewMessageID(), 0)
	if _, err := f.forms.Confirm(ctx, unknown, "", ""); !errors.Is(err, store.ErrTokenExpired) {
		t.Errorf("a token of no request: %v, want ErrTokenExpired", err)
	}
	if n, _ := f.st.CountConsent(ctx, "acme", sub.ID); n != 2 {
		t.Errorf("refused links wrote to the ledger: %d entries", n)
	}

	// Signing up again changes nothing and sends nothing.
	if pending, err := f.submit("ann@example.de", "Annie"); err != nil || pending {
		t.Fatalf("re-submission: pending %v, %v", pending, err)
	}
	if n := len(f.mail.sent()); n != 1 {
		t.Errorf("%d e-mails, want no second one", n)
	}
	if s := f.subscriber("ann@example.de"); s.Fields["firstName"] != "Ann" || s.DoubleOptInStatus != store.OptInConfirmed {
		t.Errorf("re-submission changed the subscriber: %+v", s)
	}
	if n, _ := f.st.CountConsent(ctx, "acme", sub.ID); n != 2 {
		t.Errorf("re-submission wrote to the ledger: %d entries", n)
	}
}

func TestUnsubscribedAddressGoesThroughDoubleOptInAgain(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	ctx := context.Background()
	if _, err := f.submit("ann@example.de", "Ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.forms.Confirm(ctx, f.token(), "", ""); err != nil {
		t.Fatal(err)
	}
	sub := f.subscriber("ann@example.de")
	if _, err := f.st.Unsubscribe(ctx, "acme", sub.ID); err != nil {
		t.Fatal(err)
	}
	pending, err := f.submit("ann@example.de", "Anna")
	if err != nil || !pending || len(f.mail.sent()) != 2 {
		t.Fatalf("sign-up again: pending %v, %d e-mails, %v", pending, len(f.mail.sent()), err)
	}
	if s := f.subscriber("ann@example.de"); s.SubscriptionState != store.Unsubscribed || s.Fields["firstName"] != "Ann" {
		t.Errorf("before the confirmation the subscriber must stay as it was: %+v", s)
	}
	if _, err := f.forms.Confirm(ctx, f.token(), "", ""); err != nil {
		t.Fatal(err)
	}
	if s := f.subscriber("ann@example.de"); s.SubscriptionState != store.Subscribed || s.Fields["firstName"] != "Anna" {
		t.Errorf("after the confirmation: %+v", s)
	}
	if actions, _ := f.ledger(sub.ID); !slices.Equal(actions, []store.ConsentAction{store.ConsentRequested, store.ConsentConfirmed, store.ConsentRequested, store.ConsentConfirmed}) {
		t.Errorf("ledger %v", actions)
	}
}

func TestUnconfirmedSignUpsExpire(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	ctx := context.Background()
	if _, err := f.submit("new@example.de", "Neu"); err != nil {
		t.Fatal(err)
	}
	newToken := f.token()
	newSub := f.subscriber("new@example.de")
	// An existing, unsubscribed address asks again and does not confirm either.
	old, _, err := f.st.AddSubscriber(ctx, f.group, "old@example.de", store.SignUp{State: store.Unsubscribed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.submit("old@example.de", "Alt"); err != nil {
		t.Fatal(err)
	}

	f.advance(71 * time.Hour)
	f.forms.Tick(ctx)
	f.subscriber("new@example.de") // not yet

	f.advance(2 * time.Hour)
	if _, err := f.forms.Confirm(ctx, newToken, "", ""); !errors.Is(err, store.ErrTokenExpired) {
		t.Errorf("confirming after the expiry: %v, want ErrTokenExpired", err)
	}
	f.forms.Tick(ctx)
	if _, err := f.st.SubscriberByEmail(ctx, "acme", f.group.ID, "new@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the unconfirmed subscriber is still there: %v", err)
	}
	actions, evs := f.ledger(newSub.ID)
	if !slices.Equal(actions, []store.ConsentAction{store.ConsentRequested, store.ConsentExpired}) || !strings.Contains(evs[1].Detail, "not confirmed within 72 hours; the subscriber was removed") {
		t.Errorf("ledger of the removed subscriber: %v %+v", actions, evs[len(evs)-1])
	}
	if s := f.subscriber("old@example.de"); s.SubscriptionState != store.Unsubscribed {
		t.Errorf("the existing subscriber changed: %+v", s)
	}
	if actions, evs := f.ledger(old.ID); !slices.Equal(actions, []store.ConsentAction{store.ConsentRequested, store.ConsentExpired}) || !strings.Contains(evs[1].Detail, "unchanged") {
		t.Errorf("ledger of the existing subscriber: %v", actions)
	}
	// The address is free again: a new sign-up starts over.
	if pending, err := f.submit("new@example.de", "Neu"); err != nil || !pending {
		t.Fatalf("signing up after the expiry: %v, %v", pending, err)
	}
	if again := f.subscriber("new@example.de"); again.ID == newSub.ID {
		t.Error("the expired subscriber came back")
	}
}

func TestFormWithoutDoubleOptInSubscribesAtOnce(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	ctx := context.Background()
	in := store.FormInput{GroupID: f.group.ID, Name: "Fair", DoubleOptInStatus: store.OptInExternallyDocumented, Fields: f.form.Fields, ConsentVersion: "fair-2027"}
	form, err := f.st.CreateForm(ctx, "acme", in)
	if err != nil {
		t.Fatal(err)
	}
	f.form = form
	for range 2 {
		if pending, err := f.submit("bob@example.de", "Bob"); err != nil || pending {
			t.Fatalf("submit: pending %v, %v", pending, err)
		}
	}
	sub := f.subscriber("bob@example.de")
	if sub.SubscriptionState != store.Subscribed || sub.DoubleOptInStatus != store.OptInExternallyDocumented || len(f.mail.sent()) != 0 {
		t.Errorf("subscriber %+v, %d e-mails", sub, len(f.mail.sent()))
	}
	if actions, evs := f.ledger(sub.ID); !slices.Equal(actions, []store.ConsentAction{store.ConsentSubscribed}) || evs[0].TextVersion != "fair-2027" {
		t.Errorf("ledger %v, want one SUBSCRIBED for the first submission", actions)
	}
}

func TestSignUpWhoseEmailFailsLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	ctx := context.Background()
	f.mail.fail = &mail.Deferred{Err: errors.New("451 try later")}
	if _, err := f.submit("ann@example.de", "Ann"); err == nil {
		t.Fatal("a submission whose e-mail did not go out succeeded")
	}
	if _, err := f.st.SubscriberByEmail(ctx, "acme", f.group.ID, "ann@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("subscriber stored: %v", err)
	}
	if cs, _ := f.st.ExpiredConfirmations(ctx, f.clock().Add(1000*time.Hour), 10); len(cs) != 0 {
		t.Errorf("%d requests stored", len(cs))
	}
	f.mail.fail = &mail.Rejected{Code: 550, Msg: "no such user"}
	_, err := f.submit("ann@example.de", "Ann")
	var fe store.FieldErrors
	if !errors.As(err, &fe) || fe["email"] == "" {
		t.Errorf("a refused address: %v, want a field error on email", err)
	}

	nosmtp := newFormFixture(t, func(c *engine.FormsConfig) { c.SMTP = nil })
	if nosmtp.forms.CanConfirm() {
		t.Error("CanConfirm without SMTP")
	}
	if _, err := nosmtp.submit("ann@example.de", "Ann"); !errors.Is(err, engine.ErrNoConfirmations) {
		t.Errorf("double opt-in without SMTP: %v", err)
	}
	if _, err := nosmtp.st.SubscriberByEmail(ctx, "acme", nosmtp.group.ID, "ann@example.de"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("subscriber stored without SMTP: %v", err)
	}
}

func TestConfirmationBodyWithoutAPlaceholderGetsTheLink(t *testing.T) {
	t.Parallel()
	f := newFormFixture(t)
	in := store.FormInput{GroupID: f.group.ID, Name: "Text", DoubleOptIn: true, Fields: f.form.Fields,
		Confirmation: &store.FormEmail{Subject: "Confirm", TextBody: "Hi {{fields.firstName}}, click: {{ confirmUrl }} ({{email}})", SenderEmail: "news@shop.test"}}
	form, err := f.st.CreateForm(context.Background(), "acme", in)
	if err != nil {
		t.Fatal(err)
	}
	f.form = form
	if _, err := f.submit("ann@example.de", "Ann"); err != nil {
		t.Fatal(err)
	}
	m := f.mail.sent()[0]
	link := confirmLink.FindString(m.Text)
	if m.HTML != "" || !strings.HasPrefix(m.Text, "Hi Ann, click: https://crmsync.test/forms/confirm?token=") || strings.Count(m.Text, "/forms/confirm") != 1 || !strings.HasSuffix(m.Text, "(ann@example.de)") {
		t.Errorf("text body %q", m.Text)
	}
	if u, err := url.Parse(link); err != nil || u.Query().Get("token") == "" {
		t.Errorf("link %q", link)
	}
}
