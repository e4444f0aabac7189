//! The one rule for what a predicate a runbook hands fleetbook (`.when(...)`, gates) may
//! return: a bool. Anything else — the string "false", a number, `()` — is an error, never
//! taken as true or false: a step that runs because `"false"` looked truthy does more than
//! the operator asked. The planner and the executor both decide through [`decide`].

use rhai::Dynamic;

/// True or false, or a description of the value that is neither (`string "false"`).
pub fn decide(value: &Dynamic) -> Result<bool, String> {
    value.as_bool().map_err(|_| describe(value))
}

/// A value's type and, when short, the value itself, for error messages.
fn describe(value: &Dynamic) -> String {
    if value.is_unit() {
        return "nothing (`()`): is a `;` after the last expression?".to_string();
    }
    let shown = if value.is_string() {
        format!("{:?}", value.to_string())
    } else {
        value.to_string()
    };
    let shown: String = if shown.chars().count() > 60 {
        let cut: String = shown.chars().take(57).collect();
        format!("{cut}...")
    } else {
        shown
    };
    format!("{} {shown}", value.type_name())
}

/// The message for a predicate that did not return a bool.
pub fn not_a_bool(what: &str, returned: &str) -> String {
    format!("{what} must return true or false, but it returned {returned}")
}

/// How to fix the common case: a string (a variable such as `do_upgrade=yes`, or a string
/// default) used as if it were a bool.
pub const HELP: &str = "a variable set to true/false in the inventory is a bool: give a bool default, e.g. .when(|h| h.var(\"do_upgrade\", false)); compare other text explicitly: h.var(\"mode\", \"\") == \"yes\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bools_decide() {
        assert_eq!(decide(&Dynamic::from(true)), Ok(true));
        assert_eq!(decide(&Dynamic::from(false)), Ok(false));
        let e = decide(&Dynamic::from("false")).unwrap_err();
        assert_eq!(e, "string \"false\"");
        assert!(decide(&Dynamic::UNIT).unwrap_err().starts_with("nothing"));
        assert_eq!(decide(&Dynamic::from(1_i64)).unwrap_err(), "i64 1");
    }
}
