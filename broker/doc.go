// Package broker is the public face of switchyard's message broker: the
// messages, options and results of its operations, the settings of queues,
// topics and streams with their limits, the errors and their stable codes,
// and the HTTP API's JSON shapes. It imports nothing heavy (no log, no
// metrics), so clients and services depend on it alone.
//
// The broker itself is package broker/engine; broker/httpapi and
// broker/native serve it over HTTP/JSON and the native protocol (whose
// frames are package broker/wire); broker/client talks to a broker over
// either, broker/local in-process; broker/server wires a broker process.
package broker
