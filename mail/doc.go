// Package mail delivers campaign e-mails and makes the tokens that their tracking,
// unsubscribe and confirmation links carry.
//
// A [Message] is one e-mail to one recipient. Two [Sender]s deliver it: [SMTP], over a
// pool of connections to a submission server, and [WebhookSender], which hands it to an
// external sending engine as a signed Standard Webhooks request.
//
// Every error a Sender returns falls into one of three classes, and callers act on the
// class, never on the text:
//
//   - Hard bounce: *[Rejected]. The recipient's server refused the address for good
//     (SMTP 5xx at RCPT TO). [IsHardBounce] reports it; do not send to that address again.
//   - Permanent for this message: *[Refused] (the sending engine answered with a 4xx
//     other than 408 and 429) and [ErrInvalidMessage] (the message cannot be sent as
//     built). Sending the same message again cannot succeed, but the address is not at
//     fault. [IsPermanent] reports these and hard bounces.
//   - Transient: everything else, including SMTP 4xx answers, a refused DATA, a server
//     that cannot be reached, [ErrClosed] and the context's error. The caller may retry
//     later with the same Message.ID; *[Deferred] carries the receiver's hint of when.
//
// Templates are filled with [Personalize], tracked with [Links] and [Track], and given a
// plain-text part with [TextFromHTML]; [Tokens] signs the ids in tracking URLs.
package mail
