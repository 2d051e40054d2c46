package resilient

import (
	"io"
	"net/http"
	"sync"
)

// maxDrain is how much of an abandoned response body is read before
// closing it, so that a short body leaves its connection reusable.
const maxDrain = 4 << 10

// drainClose closes the body of an abandoned response. A body announced as
// at most maxDrain bytes is read first, so its connection can be reused;
// one of unknown or larger length is closed at once (the connection is
// dropped) rather than risk waiting on a dependency that stalls mid-body.
func drainClose(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= maxDrain {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	}
	_ = resp.Body.Close()
}

// onCloseBody runs done once, after the body is closed, so that a layer can
// hold a resource (a bulkhead slot, a context) for as long as the caller
// reads the response.
type onCloseBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *onCloseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// writerToBody is onCloseBody for a body that implements io.WriterTo, kept
// so io.Copy keeps its fast path.
type writerToBody struct {
	*onCloseBody
}

func (b writerToBody) WriteTo(w io.Writer) (int64, error) {
	return b.onCloseBody.ReadCloser.(io.WriterTo).WriteTo(w)
}

// afterClose wraps body so that done runs once when it is closed. A nil
// body (never handed out by http.Transport) runs done at once.
func afterClose(body io.ReadCloser, done func()) io.ReadCloser {
	if body == nil {
		done()
		return nil
	}
	b := &onCloseBody{ReadCloser: body, done: done}
	if _, ok := body.(io.WriterTo); ok {
		return writerToBody{b}
	}
	return b
}
