//! The ingest listener's endpoints: `/healthz`, `/readyz`, and the three ingest paths
//! (`handle.rs`); anything else is `404`, a wrong method `405`.

use crate::http::{self, Method, Request};
use crate::ingest::answer::{Answer, answer_method, answer_ok, answer_refusal};
use crate::ingest::handle::{Core, Handled, Origin, Peer};
use crate::ingest::refusal::Refusal;
use crate::metrics::{Control, PathLabel};

impl Core {
    /// Handles one framed request: answers into `out` now, or parks it.
    #[expect(clippy::too_many_arguments, reason = "the request and where its answer goes")]
    pub fn handle(
        &mut self,
        control: &Control,
        request: &Request<'_>,
        peer: Peer<'_>,
        origin: Origin,
        keep_alive: bool,
        out: &mut Vec<u8>,
        consumer: &mut Option<Box<crate::consume::ConnConsumer>>,
        monotonic_ms: u64,
    ) -> Handled {
        let start = out.len();
        let handled = self.route(control, request, peer, origin, keep_alive, out, consumer, monotonic_ms);
        if request.method == Method::Head {
            http::strip_body(out, start);
        }
        handled
    }

    #[expect(clippy::too_many_arguments, reason = "the request and where its answer goes")]
    fn route(
        &mut self,
        control: &Control,
        request: &Request<'_>,
        peer: Peer<'_>,
        origin: Origin,
        keep_alive: bool,
        out: &mut Vec<u8>,
        consumer: &mut Option<Box<crate::consume::ConnConsumer>>,
        monotonic_ms: u64,
    ) -> Handled {
        let path = PathLabel::of(request.path);
        let answer = Answer { path, keep_alive, stats: &control.shards[self.shard], topology: &control.topology };
        let written = match (request.method, path) {
            (Method::Get | Method::Head, PathLabel::Healthz) => answer_ok(out, b"{\"status\":\"ok\"}", answer),
            (Method::Get | Method::Head, PathLabel::Readyz) if control.is_ready() => answer_ok(out, b"{\"status\":\"ready\"}", answer),
            (Method::Get | Method::Head, PathLabel::Readyz) => answer_refusal(out, Refusal::NotReady, Refusal::NotReady.message(), answer),
            (Method::Post, PathLabel::Events | PathLabel::EventsBatch | PathLabel::Webhooks) => {
                return self.ingest(request, peer, origin, answer, out);
            }
            (_, PathLabel::Healthz | PathLabel::Readyz) => answer_method(out, b"allow: GET, HEAD\r\n", answer),
            (_, PathLabel::Events | PathLabel::EventsBatch | PathLabel::Webhooks) => answer_method(out, b"allow: POST\r\n", answer),
            (_, PathLabel::Topics | PathLabel::Subscriptions) => {
                return self.consume_request(request, peer, answer, out, consumer, monotonic_ms);
            }
            (_, PathLabel::Other) => answer_refusal(out, Refusal::NotFound, Refusal::NotFound.message(), answer),
        };
        Handled::Answered(written)
    }
}
