package store

import (
	"context"
	"strings"
)

// ResponseMode is how a connection writes campaign reactions back to the CRM.
type ResponseMode string

// The response modes: a campaignresponse row per reaction, or only for the first
// reaction of each type per recipient (first open, first click …), which keeps the
// CRM's costly storage small.
const (
	ResponsePerReaction  ResponseMode = "PER_REACTION"
	ResponseFirstPerType ResponseMode = "FIRST_PER_TYPE"
)

// Defaults of the campaign settings.
const (
	DefaultSoftBounceLimit = 3
	maxSendRate            = 1_000_000
)

// CampaignSettings are a connection's settings for campaign sends.
type CampaignSettings struct {
	// SendRatePerMinute caps how fast a send goes out; 0 is no cap.
	SendRatePerMinute int `bson:"sendRatePerMinute,omitempty"`
	// Responses is how reactions become campaign responses; "" is PER_REACTION.
	Responses ResponseMode `bson:"responses,omitempty"`
	// SoftBounceLimit is how many soft bounces mark an address invalid; 0 is the default.
	SoftBounceLimit int `bson:"softBounceLimit,omitempty"`
	// SendingEngineURL, when set, hands messages to the eMS's own sending engine
	// (a signed webhook per message) instead of SMTP; its secret is sealed.
	SendingEngineURL    string `bson:"sendingEngineUrl,omitempty"`
	SendingEngineSecret []byte `bson:"sendingEngineSecret,omitempty"`
}

// ResponseMode gives the mode, with its default.
func (c CampaignSettings) ResponseMode() ResponseMode {
	if c.Responses == "" {
		return ResponsePerReaction
	}
	return c.Responses
}

// SoftBounces gives the soft bounce limit, with its default.
func (c CampaignSettings) SoftBounces() int {
	if c.SoftBounceLimit <= 0 {
		return DefaultSoftBounceLimit
	}
	return c.SoftBounceLimit
}

// CampaignSettingsUpdate is a partial change of the settings: nil fields stay.
// An empty SendingEngineURL removes the hand-off.
type CampaignSettingsUpdate struct {
	SendRatePerMinute   *int
	Responses           *ResponseMode
	SoftBounceLimit     *int
	SendingEngineURL    *string
	SendingEngineSecret *string
}

// SetCampaignSettings validates and applies a change of a connection's campaign
// settings.
func (s *Store) SetCampaignSettings(ctx context.Context, tenant, id string, in CampaignSettingsUpdate) (*Connection, error) {
	c, err := s.Connection(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	cs := &c.Campaigns
	if in.SendRatePerMinute != nil {
		if *in.SendRatePerMinute < 0 || *in.SendRatePerMinute > maxSendRate {
			return nil, invalid("sendRatePerMinute", "must be between 0 (no cap) and %d", maxSendRate)
		}
		cs.SendRatePerMinute = *in.SendRatePerMinute
	}
	if in.Responses != nil {
		if *in.Responses != ResponsePerReaction && *in.Responses != ResponseFirstPerType {
			return nil, invalid("responses", "must be PER_REACTION or FIRST_PER_TYPE")
		}
		cs.Responses = *in.Responses
	}
	if in.SoftBounceLimit != nil {
		if *in.SoftBounceLimit < 1 || *in.SoftBounceLimit > 100 {
			return nil, invalid("softBounceLimit", "must be between 1 and 100")
		}
		cs.SoftBounceLimit = *in.SoftBounceLimit
	}
	if in.SendingEngineURL != nil {
		cs.SendingEngineURL = ""
		if u := strings.TrimSpace(*in.SendingEngineURL); u != "" {
			if cs.SendingEngineURL, err = validHTTPURL("sendingEngineUrl", u); err != nil {
				return nil, err
			}
		}
	}
	if in.SendingEngineSecret != nil {
		cs.SendingEngineSecret = nil
		if *in.SendingEngineSecret != "" {
			if err := validWebhookSecret("sendingEngineSecret", *in.SendingEngineSecret); err != nil {
				return nil, err
			}
			cs.SendingEngineSecret = s.sealer.seal(*in.SendingEngineSecret)
		}
	}
	if cs.SendingEngineURL != "" && len(cs.SendingEngineSecret) == 0 {
		return nil, invalid("sendingEngineSecret", "a sending engine needs a secret to sign its webhooks (whsec_ + base64)")
	}
	if err := s.replaceByID(ctx, colConnections, c.ID, c); err != nil {
		return nil, err
	}
	return c, nil
}

// SendingEngineSecret opens the connection's sending engine secret; "" when none.
func (s *Store) SendingEngineSecret(c *Connection) (string, error) {
	if len(c.Campaigns.SendingEngineSecret) == 0 {
		return "", nil
	}
	return s.sealer.open(c.Campaigns.SendingEngineSecret)
}

// RecordBounce counts a bounce of a subscriber's address: a hard one, or soft ones
// reaching limit, mark it invalid. It reports whether the address is invalid now.
func (s *Store) RecordBounce(ctx context.Context, tenant, id string, hard bool, limit int) (invalid bool, err error) {
	sub, err := s.Subscriber(ctx, tenant, id)
	if err != nil {
		return false, err
	}
	if !hard {
		sub.SoftBounces++
	}
	if hard || sub.SoftBounces >= limit {
		sub.AddressInvalid = true
	}
	sub.UpdatedAt = s.now().UTC()
	if err := s.replaceByID(ctx, colSubscribers, sub.ID, sub); err != nil {
		return false, err
	}
	return sub.AddressInvalid, nil
}
