//! placeholder
pub fn ctx() -> datafusion::prelude::SessionContext {
    datafusion::prelude::SessionContext::new()
}
