//! A test fixture whose trigger's URL suffix has a space: its upload must be refused.

use latch_sdk::{ModuleInfo, Result, Start, Trigger, Workflow};
use serde_json::Value;

struct BadTrigger;

impl Workflow for BadTrigger {
    fn describe() -> ModuleInfo {
        ModuleInfo::new("Declares an illegal trigger suffix").trigger(Trigger::new("orders", "new orders"))
    }

    fn run(_start: Start) -> Result<Value> {
        Ok(Value::Null)
    }
}

latch_sdk::workflow!(BadTrigger);
