//! `latch:workflow/responses`: answering the HTTP caller of a delivered request.

use super::HostState;
use super::bindings::responses::Host;
use super::bindings::types::{Error as WitError, Response};
use super::fault::HostFault;
use super::webhooks::{check_status, diverged_unless};
use crate::store::records::{Event, Failure, HttpResponse};

impl HostState {
    fn check_respond(&mut self, request_id: &str, status: u16) -> Result<(), Failure> {
        if !self.delivered.contains(request_id) {
            return Err(Failure::new(
                "unknown-request",
                format!("request `{request_id}` was not delivered to this run"),
            ));
        }
        check_status(status)?;
        if !self.responded.insert(request_id.to_string()) {
            return Err(Failure::new("already-responded", format!("request `{request_id}` was answered already")));
        }
        Ok(())
    }

    async fn respond_live(
        &mut self,
        request_id: String,
        response: HttpResponse,
    ) -> Result<Result<(), Failure>, HostFault> {
        let status = response.status;
        let result = self.check_respond(&request_id, status);
        let recorded = result.is_ok().then(|| response.clone());
        let event =
            Event::Responded { request_id: request_id.clone(), status, result: result.clone(), response: recorded };
        self.journal.record(event)?;
        if result.is_ok() {
            // The answer may carry what the run made so far (a fresh callback URL, say):
            // once a caller has seen it, a crash must not undo it.
            self.commit().await?;
            // A caller that gave up (deadline passed) is simply not there any more.
            self.shared.holds.answer(&request_id, response);
        }
        Ok(result)
    }
}

impl Host for HostState {
    async fn respond(&mut self, request_id: String, response: Response) -> wasmtime::Result<Result<(), WitError>> {
        let result = match self.journal.replay("responded")? {
            Some(Event::Responded { request_id: recorded, result, .. }) => {
                diverged_unless(recorded == request_id, || {
                    format!("the run answers `{request_id}` where its log answers `{recorded}`")
                })?;
                self.responded.insert(request_id);
                result
            }
            _ => self.respond_live(request_id, response.into()).await?,
        };
        Ok(result.map_err(WitError::from))
    }
}
