package emulator

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"
)

// Webhook events (reference/dataverse.md §1–§3, §7.4): every write raises pipeline
// events — Create, Update, Delete and, for state and owner changes, SetState and
// Assign — and each event goes to every enabled step registered on its message and
// table (and, for Update, on one of the columns sent) whose handler is a webhook
// service endpoint. The steps are matched and the row's state captured under the
// emulator's lock; bodies are built and sent outside it (remotecontext.go,
// delivery.go).
//
// The emulator delivers every step asynchronously after the write, whatever its
// mode and stage: a synchronous step's failure does not roll the write back.

// Messages the emulator raises.
const (
	msgCreate         = "Create"
	msgUpdate         = "Update"
	msgDelete         = "Delete"
	msgSetState       = "SetState"
	msgAssign         = "Assign"
	msgCreateMultiple = "CreateMultiple"
	msgUpdateMultiple = "UpdateMultiple"
	msgAddMember      = "AddMember"      // Web API action AddMemberList (§3.6)
	msgAddListMembers = "AddListMembers" // AddListMembersList
	msgRemoveMember   = "RemoveMember"   // RemoveMemberList
	msgCopyDynamic    = "CopyDynamicListToStatic"
	msgAssociate      = "Associate"
	msgDisassociate   = "Disassociate"
)

// rowChange is one pipeline event: the message, the row and its state before and
// after (nil when the row did not exist then).
type rowChange struct {
	message   string
	t         *table
	id        string
	pre, post map[string]any
	// target lists the columns an Update's Target carries: those the request sent,
	// each of which counts as changed (§4.3).
	target []string
	// input and output, when set, are the message's InputParameters and
	// OutputParameters (list actions, Associate); otherwise they follow from the
	// message and the row.
	input, output []wireKV
	// rows are the per-row Creates or Updates a CreateMultiple or UpdateMultiple
	// carries as its Targets.
	rows []rowChange
}

// op is one Web API operation; the events it raises share the caller, the
// correlation id and the time.
type op struct {
	caller        *principal
	correlationID string
	requestID     string
	at            time.Time
}

func (e *Emulator) newOp(caller *principal) op {
	return op{caller: caller, correlationID: newID(), requestID: newID(), at: e.now().UTC()}
}

// stepCall is one event for one step, captured under the lock.
type stepCall struct {
	change rowChange // pre and post are copies the caller owns
	op     op
	step   stepInfo
}

// stepInfo is what a delivery needs of a step, its images and its endpoint.
type stepInfo struct {
	id, name          string
	stage, mode, rank int
	url               string
	authType          int
	authValue         string
	images            []imageInfo
}

// imageInfo is one registered image of a step.
type imageInfo struct {
	alias string
	kind  int      // imagePre, imagePost, imageBoth
	attrs []string // nil: every column
}

// createChanges is what a create raises: one Create and, on a table that takes the
// bulk messages, a CreateMultiple with that one Target, as §7.1 describes the
// merged pipelines.
func createChanges(t *table, rec *record) []rowChange {
	c := rowChange{message: msgCreate, t: t, id: rec.id, post: rec.vals}
	if t.bulk {
		return []rowChange{c, multiChange(msgCreateMultiple, t, []rowChange{c})}
	}
	return []rowChange{c}
}

// multiChange is the CreateMultiple or UpdateMultiple event of a set of per-row
// changes; CreateMultiple answers the ids it made (§7.1).
func multiChange(message string, t *table, rows []rowChange) rowChange {
	c := rowChange{message: message, t: t, id: zeroGUID, rows: rows}
	if message == msgCreateMultiple {
		ids := make([]any, len(rows))
		for i, r := range rows {
			ids[i] = r.id
		}
		c.output = []wireKV{{"Ids", ids}}
	}
	return c
}

// deleteChanges is what a delete raises: one Delete.
func deleteChanges(t *table, rec *record) []rowChange {
	return []rowChange{{message: msgDelete, t: t, id: rec.id, pre: rec.vals}}
}

// updateChanges is what an update raises. As §7.4 describes, state columns and
// other columns sent together are processed as two updates, the other columns
// first; the state change also raises SetState and a new owner raises Assign.
//
// multi adds the UpdateMultiple with one Target that a single update raises on a
// table that takes the bulk messages (§7.1); UpdateMultiple itself raises one for
// all its rows instead.
func updateChanges(t *table, id string, pre, post map[string]any, sent []string, multi bool) []rowChange {
	var plain, state []string
	for _, name := range sent {
		if name == "statecode" || name == "statuscode" {
			state = append(state, name)
		} else {
			plain = append(plain, name)
		}
	}
	var out []rowChange
	if len(plain) > 0 || len(state) == 0 {
		mid := post
		if len(state) > 0 {
			mid = maps.Clone(post)
			mid["statecode"], mid["statuscode"] = pre["statecode"], pre["statuscode"]
		}
		out = append(out, rowChange{message: msgUpdate, t: t, id: id, pre: pre, post: mid, target: plain})
		if slices.Contains(plain, "ownerid") {
			out = append(out, rowChange{message: msgAssign, t: t, id: id, pre: pre, post: mid})
		}
		pre = mid
	}
	if len(state) > 0 {
		// Sending statecode alone sets the default statuscode, so both changed.
		out = append(out,
			rowChange{message: msgUpdate, t: t, id: id, pre: pre, post: post, target: []string{"statecode", "statuscode"}},
			rowChange{message: msgSetState, t: t, id: id, pre: pre, post: post})
	}
	if t.bulk && multi {
		out = append(out, multiChange(msgUpdateMultiple, t, []rowChange{updateTarget(t, id, post, sent)}))
	}
	return out
}

// updateTarget is the one Target an update of these columns puts into an
// UpdateMultiple.
func updateTarget(t *table, id string, post map[string]any, sent []string) rowChange {
	target := slices.Clone(sent)
	if slices.Contains(target, "statecode") && !slices.Contains(target, "statuscode") {
		target = append(target, "statuscode") // the default status was set with it
	}
	return rowChange{message: msgUpdate, t: t, id: id, post: post, target: target}
}

// sentColumns are the columns of a change that were written: those the body named
// and the operation may set (read-only and, on update, create-only columns are
// dropped as Dataverse drops them).
func sentColumns(t *table, ch *change, creating bool) []string {
	out := make([]string, 0, len(ch.vals))
	for name := range ch.vals {
		c := t.byName[name]
		if c.access == readOnly || (c.access == createOnly && !creating) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// hooksLocked matches the changes of one operation against the registered steps
// and captures what each delivery needs; changes is only called when a step exists,
// so writes without webhooks pay nothing. Callers hold e.mu.
func (e *Emulator) hooksLocked(o op, changes func() []rowChange) []*stepCall {
	steps := e.rows["sdkmessageprocessingstep"]
	if len(steps) == 0 {
		return nil
	}
	var out []*stepCall
	for _, c := range changes() {
		var matched []stepInfo
		for _, s := range steps {
			if info, ok := e.matchLocked(s, c); ok {
				matched = append(matched, info)
			}
		}
		if len(matched) == 0 {
			continue
		}
		slices.SortFunc(matched, func(a, b stepInfo) int {
			return cmp.Or(cmp.Compare(a.stage, b.stage), cmp.Compare(a.rank, b.rank), strings.Compare(a.id, b.id))
		})
		// Each event gets its own copies of the row maps, so nothing a later write
		// does to the table can reach a body being built.
		c.pre, c.post = maps.Clone(c.pre), maps.Clone(c.post)
		for _, info := range matched {
			out = append(out, &stepCall{change: c, op: o, step: info})
		}
	}
	return out
}

// matchLocked says whether an enabled step takes a change and, if so, returns what
// its delivery needs.
func (e *Emulator) matchLocked(s *record, c rowChange) (stepInfo, bool) {
	if state, _ := s.vals["statecode"].(int64); state != 0 {
		return stepInfo{}, false
	}
	if e.messageNameLocked(s) != c.message {
		return stepInfo{}, false
	}
	if f, ok := s.vals["sdkmessagefilterid"].(ref); ok {
		frec := e.rows["sdkmessagefilter"][f.id]
		if frec == nil || frec.vals["primaryobjecttypecode"] != c.t.logical {
			return stepInfo{}, false
		}
	}
	if attrs, _ := s.vals["filteringattributes"].(string); c.message == msgUpdate && strings.TrimSpace(attrs) != "" {
		hit := false
		for _, a := range splitList(attrs) {
			if slices.Contains(c.target, strings.ToLower(a)) {
				hit = true
				break
			}
		}
		if !hit {
			return stepInfo{}, false
		}
	}
	handler, _ := s.vals["eventhandler"].(ref)
	ep := e.rows["serviceendpoint"][handler.id]
	if ep == nil {
		return stepInfo{}, false
	}
	if contract, _ := ep.vals["contract"].(int64); contract != contractWebhook {
		return stepInfo{}, false
	}
	info := stepInfo{id: s.id}
	info.name, _ = s.vals["name"].(string)
	info.stage = intVal(s.vals["stage"])
	info.mode = intVal(s.vals["mode"])
	info.rank = intVal(s.vals["rank"])
	info.url, _ = ep.vals["url"].(string)
	info.authType = intVal(ep.vals["authtype"])
	info.authValue, _ = ep.vals["authvalue"].(string)
	stepRef := ref{table: "sdkmessageprocessingstep", id: s.id}
	for _, img := range e.rows["sdkmessageprocessingstepimage"] {
		if img.vals["sdkmessageprocessingstepid"] != stepRef {
			continue
		}
		ii := imageInfo{kind: intVal(img.vals["imagetype"])}
		ii.alias, _ = img.vals["entityalias"].(string)
		if attrs, _ := img.vals["attributes"].(string); strings.TrimSpace(attrs) != "" {
			for _, a := range splitList(attrs) {
				ii.attrs = append(ii.attrs, strings.ToLower(a))
			}
		}
		info.images = append(info.images, ii)
	}
	slices.SortFunc(info.images, func(a, b imageInfo) int { return strings.Compare(a.alias, b.alias) })
	return info, true
}

// splitList splits a comma list such as filteringattributes, dropping blanks.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// intVal reads a stored whole number or choice.
func intVal(v any) int {
	n, _ := v.(int64)
	return int(n)
}
