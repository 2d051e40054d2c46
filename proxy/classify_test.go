package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/switchyard/switchyard/retry"
)

// An upstream that closes the connection before answering (a killed
// process) is a reset, retried where that is safe, like one that sends
// a RST; a dial failure is a connect failure.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want retry.ErrorKind
	}{
		{io.EOF, retry.Reset},
		{fmt.Errorf("reading response: %w", io.ErrUnexpectedEOF), retry.Reset},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, retry.Reset},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, retry.ConnectFailure},
		{errors.New("something else"), retry.Other},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
