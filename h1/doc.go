// Package h1 reads and writes HTTP/1.1 messages for both sides of the
// balancer: requests from clients (ReadRequest, with the bodies it
// frames), responses from backends (ReadResponse), and the pieces both
// writers share (status lines, header fields, chunked framing), with the
// token, field and deadline helpers they need, once.
//
// It is strict where a proxy must be (RFC 9112): a message is framed one
// way or refused, never guessed at, so the balancer and the server behind
// it cannot disagree on where a message ends. The fuzz tests compare its
// framing with net/http's on the same bytes.
package h1
