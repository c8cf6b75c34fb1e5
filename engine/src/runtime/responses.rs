//! `latch:workflow/responses`: answering the HTTP caller of a delivered request.

use super::HostState;
use super::bindings::responses::Host;
use super::bindings::types::{Error as WitError, Response};
use crate::store::records::{Event, Failure, HttpResponse};

impl HostState {
    fn respond_live(&mut self, request_id: &str, response: HttpResponse) -> Result<(), Failure> {
        if !self.delivered.contains(request_id) {
            return Err(Failure::new(
                "unknown-request",
                format!("request `{request_id}` was not delivered to this run"),
            ));
        }
        if !self.responded.insert(request_id.to_string()) {
            return Err(Failure::new("already-responded", format!("request `{request_id}` was answered already")));
        }
        if !(100..=599).contains(&response.status) {
            return Err(Failure::new("bad-status", format!("{} is not an HTTP status", response.status)));
        }
        // A caller that gave up (deadline passed) is simply not there any more.
        self.shared.responses.answer(request_id, response);
        Ok(())
    }
}

impl Host for HostState {
    async fn respond(&mut self, request_id: String, response: Response) -> wasmtime::Result<Result<(), WitError>> {
        let result = match self.journal.replay("responded")? {
            Some(Event::Responded { result, .. }) => {
                self.responded.insert(request_id);
                result
            }
            _ => {
                let status = response.status;
                let result = self.respond_live(&request_id, response.into());
                self.journal.record(Event::Responded { request_id, status, result: result.clone() })?;
                result
            }
        };
        Ok(result.map_err(WitError::from))
    }
}
