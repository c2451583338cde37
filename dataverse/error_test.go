package dataverse

import (
	"errors"
	"fmt"
	"testing"
)

func TestDecodeErrorMessage(t *testing.T) {
	t.Parallel()

	tests := []struct {
		err  *DecodeError
		want string
	}{
		{&DecodeError{Reason: "empty body"}, "dataverse: not a RemoteExecutionContext: empty body"},
		{&DecodeError{Field: "InputParameters[2].value", Reason: "unexpected end of input"},
			"dataverse: not a RemoteExecutionContext: InputParameters[2].value: unexpected end of input"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		wrapped := fmt.Errorf("decode webhook: %w", tt.err)
		var de *DecodeError
		if !errors.Is(wrapped, ErrNotContext) || !errors.As(wrapped, &de) {
			t.Errorf("%v: errors.Is/As through a wrap failed", wrapped)
		}
	}
}

func TestDecodeErrorPrefix(t *testing.T) {
	t.Parallel()

	e := &DecodeError{}
	for _, seg := range []string{"key", "[1]", "value", "[2]", "InputParameters"} {
		e.prefix(seg)
	}
	if want := "InputParameters[2].value[1].key"; e.Field != want {
		t.Errorf("Field = %q, want %q", e.Field, want)
	}
}
