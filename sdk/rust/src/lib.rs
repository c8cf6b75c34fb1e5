//! Write Latch workflows in plain Rust.
//!
//! A workflow is a type implementing [`Workflow`], exported with [`workflow!`]. Build it
//! with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is the module
//! to upload to the engine.
//!
//! ```no_run
//! use latch_sdk::{log, Error, Start, Webhook, WebhookOptions, Workflow};
//!
//! struct Approval;
//!
//! impl Workflow for Approval {
//!     fn run(_start: Start) -> Result<serde_json::Value, Error> {
//!         let hook = Webhook::create(WebhookOptions::new())?;
//!         log::info(format!("approve at {}", hook.url()));
//!         let request = hook.next()?;
//!         Ok(request.data)
//!     }
//! }
//!
//! latch_sdk::workflow!(Approval);
//! ```

#![warn(missing_docs)]

mod error;
mod http;
mod module;
mod outbound;
mod step;
mod wait;
mod webhook;

pub use error::{Error, Result};
pub use http::{Auth, Caller, DEFAULT_ANSWER_DEADLINE_MS, Method, Request, Response, ResponseMode, SignatureScheme};
pub use module::{ModuleInfo, NamedTrigger, Trigger};
pub use outbound::{HttpRequest, HttpResponse};
pub use step::{RetryPolicy, StepError, step};
pub use wait::{Outcome, Selected, Waitable, select, sleep, sleep_until, wait_trigger};
pub use webhook::{Webhook, WebhookOptions};

use serde::de::DeserializeOwned;

use crate::__private::bindings::latch::workflow::context;

/// A workflow: the code a run executes, from its start to its output.
pub trait Workflow {
    /// Runs the workflow to completion; `Ok` is the run's JSON output, `Err` fails the run.
    fn run(start: Start) -> Result<serde_json::Value>;

    /// Describes the module to the engine when it is uploaded (description, start triggers).
    fn describe() -> ModuleInfo {
        ModuleInfo::default()
    }
}

/// How a run was started.
#[derive(Clone, Debug)]
pub enum Start {
    /// Through the API (`POST /v1/modules/{name}/runs`), with this JSON input.
    Api(serde_json::Value),
    /// By a call to one of the module's start triggers.
    Trigger(Request),
}

impl Start {
    /// The run's input as `T`: the API input, or the trigger request's data.
    /// Fails with code `bad-input` when it does not match `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(self.data()).map_err(|e| Error::new("bad-input", e.to_string()))
    }

    /// The run's input as raw JSON: the API input, or the trigger request's data.
    pub fn data(&self) -> &serde_json::Value {
        match self {
            Start::Api(value) => value,
            Start::Trigger(request) => &request.data,
        }
    }
}

/// The id of this run.
pub fn run_id() -> String {
    context::run_id()
}

/// The name of the module this run executes.
pub fn module_name() -> String {
    context::module_name()
}

/// Wall-clock milliseconds since the Unix epoch; recorded, so the same on replay.
pub fn now_ms() -> u64 {
    context::now_ms()
}

/// 64 random bits; recorded, so the same on replay.
pub fn random() -> u64 {
    context::random()
}

/// Whether this run takes the path of the change named `id` at this point. A new version
/// of a module that makes calls the old one did not wraps them in `if patched("...")`:
/// runs that reach this point live (new runs, and waiting runs moved to the new version
/// once they get past their wait) take the new path, and the choice is recorded; a run
/// whose log was recorded by the old code replays the old path. The first answer for an
/// id holds for the rest of the run. With it, a waiting run's
/// log replays on the new version, so the run can be upgraded to it.
///
/// ```ignore
/// if latch_sdk::patched("stamp-orders") {
///     stamped_at = Some(latch_sdk::now_ms());
/// }
/// ```
pub fn patched(id: &str) -> bool {
    context::patched(id)
}

/// Lines appended to the run's event log.
pub mod log {
    use crate::__private::bindings::latch::workflow::context::{self, Level};

    /// Logs a detail useful when debugging.
    pub fn debug(message: impl AsRef<str>) {
        context::log(Level::Debug, message.as_ref());
    }

    /// Logs a normal step of the run.
    pub fn info(message: impl AsRef<str>) {
        context::log(Level::Info, message.as_ref());
    }

    /// Logs something unexpected that the run survives.
    pub fn warn(message: impl AsRef<str>) {
        context::log(Level::Warn, message.as_ref());
    }

    /// Logs a failure.
    pub fn error(message: impl AsRef<str>) {
        context::log(Level::Error, message.as_ref());
    }
}

/// Exports a [`Workflow`] type as the component's `run` and `describe` functions.
/// Use it once per crate: `latch_sdk::workflow!(MyWorkflow);`.
#[macro_export]
macro_rules! workflow {
    ($ty:ty) => {
        const _: () = {
            struct __LatchWorkflowExport;

            impl $crate::__private::Guest for __LatchWorkflowExport {
                fn describe() -> $crate::__private::bindings::ModuleInfo {
                    $crate::__private::describe::<$ty>()
                }

                fn run(
                    start: $crate::__private::bindings::Start,
                ) -> ::core::result::Result<::std::string::String, $crate::__private::bindings::Error> {
                    $crate::__private::run::<$ty>(start)
                }
            }

            $crate::__export_workflow_impl!(
                __LatchWorkflowExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Support for [`workflow!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    /// The raw bindings generated from `wit/workflow.wit`.
    pub mod bindings {
        wit_bindgen::generate!({
            world: "workflow",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "__export_latch_workflow",
            default_bindings_module: "latch_sdk::__private::bindings",
        });
    }

    pub use bindings::Guest;

    use crate::{Error, Start, Workflow};

    /// The `describe` export: the workflow's module info in WIT form.
    pub fn describe<W: Workflow>() -> bindings::ModuleInfo {
        W::describe().into()
    }

    /// The `run` export: converts the start, runs the workflow, and encodes its output.
    pub fn run<W: Workflow>(start: bindings::Start) -> Result<String, bindings::Error> {
        let start = match start {
            bindings::Start::Api(json) => Start::Api(crate::http::parse_input(&json)?),
            bindings::Start::Trigger(request) => Start::Trigger(request.into()),
        };
        match W::run(start) {
            Ok(output) => Ok(output.to_string()),
            Err(error) => Err(error.into()),
        }
    }

    impl From<Error> for bindings::Error {
        fn from(error: Error) -> Self {
            bindings::Error { code: error.code, message: error.message }
        }
    }
}
