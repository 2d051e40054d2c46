package transform

import (
	"errors"
	"fmt"
)

// Config is a route's transformations: the `transform:` block of the
// package documentation. The zero value transforms nothing.
type Config struct {
	// Request transforms requests before forwarding (NewRequest, then
	// RequestTransform.Middleware). Default nil: none.
	Request *Request `yaml:"request"`
	// Response transforms upstream responses (NewResponse, then
	// ResponseTransform.Hook). Default nil: none.
	Response *Response `yaml:"response"`
}

// Validate reports every problem of c at once, each prefixed with its key
// path ("request.headers.set: ..."); it does not modify c.
func (c Config) Validate() error {
	var errs []error
	if c.Request != nil {
		for _, e := range c.Request.validate() {
			errs = append(errs, fmt.Errorf("request.%w", e))
		}
	}
	if c.Response != nil {
		for _, e := range c.Response.validate() {
			errs = append(errs, fmt.Errorf("response.%w", e))
		}
	}
	return errors.Join(errs...)
}
