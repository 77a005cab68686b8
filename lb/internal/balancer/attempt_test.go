package balancer

import (
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	fail := errors.New("failed")
	for _, tc := range []struct {
		name       string
		res        result
		replayable bool
		want       verdict
	}{
		{"answered", result{stage: stageRelay}, true, verdict{}},
		{"dial refused", result{stage: stageDial, err: fail}, false, verdict{retry: retryOther, blame: true}},
		{"send failed on a new conn, nothing sent", result{stage: stageSend, err: fail}, false, verdict{retry: retryOther, blame: true}},
		{"send failed on a reused conn, nothing sent", result{stage: stageSend, err: fail, reused: true}, false, verdict{retry: retryFresh}},
		{"client body malformed", result{stage: stageSend, err: fail, sent: true, client: true}, true, verdict{}},
		{"client body malformed before a byte went out", result{stage: stageSend, err: fail, client: true}, true, verdict{}},
		{"client went away while waiting", result{stage: stageAwait, err: fail, sent: true, client: true, status: 499}, true, verdict{}},
		{"client stopped reading the answer", result{stage: stageRelay, err: fail, sent: true, client: true}, true, verdict{}},
		{"backend timed out", result{stage: stageAwait, err: fail, sent: true, timeout: true}, true, verdict{blame: true}},
		{"backend timed out on a reused conn", result{stage: stageAwait, err: fail, sent: true, timeout: true, reused: true}, true, verdict{blame: true}},
		{"no answer, new conn, replayable", result{stage: stageAwait, err: fail, sent: true}, true, verdict{retry: retryOther, blame: true}},
		{"no answer, new conn, not replayable", result{stage: stageAwait, err: fail, sent: true}, false, verdict{blame: true}},
		{"no answer, reused conn, replayable", result{stage: stageAwait, err: fail, sent: true, reused: true}, true, verdict{retry: retryFresh, dropIdle: true}},
		{"no answer, reused conn, not replayable", result{stage: stageAwait, err: fail, sent: true, reused: true}, false, verdict{dropIdle: true}},
		{"partial send then no answer", result{stage: stageSend, err: fail, sent: true}, true, verdict{retry: retryOther, blame: true}},
		{"malformed answer", result{stage: stageHead, err: fail, sent: true}, true, verdict{blame: true}},
		{"answer cut mid-body", result{stage: stageRelay, err: fail, sent: true, status: 200}, true, verdict{blame: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := next(tc.res, tc.replayable); got != tc.want {
				t.Errorf("next(%+v, replayable=%v) = %+v, want %+v", tc.res, tc.replayable, got, tc.want)
			}
		})
	}
}
