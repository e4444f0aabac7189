//! A script's `print` and `debug` as tracing events (target `fleetbook::script`), each with
//! the position of the call (`script = "FILE:LINE:COL"`) and its secrets redacted.
//!
//! Rhai hands its `on_print` callback the text alone. So `print` is registered here as a
//! native function, which sees the call's position through its [`NativeCallContext`]; Rhai
//! still passes what it returns to `on_print`, and it returns nothing. The engine's own
//! functions are found before the packages', so these overloads win for every argument type
//! the core package prints itself (strings, chars, bools, floats, arrays, maps, unit) and for
//! everything else through `Dynamic`. `debug` keeps Rhai's callback, which has the position.

use crate::secrets::Secrets;
use rhai::{Array, Dynamic, Engine, ImmutableString, Map, NativeCallContext, Position};
use std::sync::Arc;

/// Where a script's output goes, and how its lines are prefixed (`runbook`, `test`).
struct Output {
    secrets: Secrets,
    /// The name of the script being run: Rhai gives a source only for imported modules.
    main: String,
    prefix: &'static str,
}

impl Output {
    fn at(&self, source: Option<&str>, pos: Position) -> String {
        let file = source.unwrap_or(&self.main);
        match (pos.line(), pos.position()) {
            (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
            (Some(line), None) => format!("{file}:{line}"),
            _ => file.to_string(),
        }
    }

    fn print(&self, ctx: &NativeCallContext, value: Dynamic) -> ImmutableString {
        // As Rhai's own `print` shows it: arrays and maps with their items' debug form,
        // anything else through `to_string` (which a host type or a script may define).
        let show = if value.is_array() || value.is_map() {
            "to_debug"
        } else {
            "to_string"
        };
        let text = match value.clone().into_immutable_string() {
            Ok(s) => s,
            Err(_) => ctx
                .call_native_fn::<ImmutableString>(show, (value.clone(),))
                .unwrap_or_else(|_| value.to_string().into()),
        };
        let script = self.at(ctx.call_source(), ctx.call_position());
        tracing::info!(
            target: "fleetbook::script",
            script = %script,
            "{}: {}",
            self.prefix,
            self.secrets.redact(&text)
        );
        ImmutableString::new()
    }
}

/// Routes `print` and `debug` of scripts run by `engine` to tracing. `main`: the name of the
/// top script, as messages show it.
pub(crate) fn route(engine: &mut Engine, secrets: Secrets, main: &str, prefix: &'static str) {
    let out = Arc::new(Output {
        secrets,
        main: main.to_string(),
        prefix,
    });
    let o = out.clone();
    engine.register_fn("print", move |ctx: NativeCallContext| {
        o.print(&ctx, Dynamic::from(ImmutableString::new()))
    });
    macro_rules! print_of {
        ($($t:ty),*) => {$({
            let o = out.clone();
            engine.register_fn("print", move |ctx: NativeCallContext, v: $t| {
                o.print(&ctx, Dynamic::from(v))
            });
        })*};
    }
    print_of!(Dynamic, ImmutableString, char, bool, f64, (), Array, Map);
    // What reaches Rhai's own callback is what the functions above return (nothing), or a
    // print of a type they missed: kept, without a position, rather than lost.
    let o = out.clone();
    engine.on_print(move |s| {
        if !s.is_empty() {
            tracing::info!(target: "fleetbook::script", "{}: {}", o.prefix, o.secrets.redact(s));
        }
    });
    engine.on_debug(move |s, src, pos| {
        let script = out.at(src, pos);
        tracing::debug!(
            target: "fleetbook::script",
            script = %script,
            "{} debug {script}: {}",
            out.prefix,
            out.secrets.redact(s)
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    /// One event's fields (name, value as text).
    type Fields = Vec<(String, String)>;

    /// Every event's fields.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Fields>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Record(Fields);
            impl Visit for Record {
                fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
                    self.0.push((f.name().to_string(), format!("{v:?}")));
                }
                fn record_str(&mut self, f: &Field, v: &str) {
                    self.0.push((f.name().to_string(), v.to_string()));
                }
            }
            let mut fields = Record(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }

    fn run(script: &str) -> Vec<Fields> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let mut engine = Engine::new();
            let secrets = Secrets::new();
            secrets.add("pw", "hunter2");
            route(&mut engine, secrets, "rb.rhai", "runbook");
            engine.run(script).unwrap();
        });
        let events = seen.0.lock().unwrap().clone();
        events
    }

    fn field<'a>(event: &'a [(String, String)], name: &str) -> &'a str {
        event
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {name} in {event:?}"))
    }

    /// What Rhai's own `print` writes for `script`, a line per call.
    fn stock_prints(script: &str) -> Vec<String> {
        let mut engine = Engine::new();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        engine.on_print(move |s| l.lock().unwrap().push(format!("runbook: {s}")));
        engine.run(script).unwrap();
        let lines = lines.lock().unwrap().clone();
        lines
    }

    #[test]
    fn print_of_every_kind_of_value_carries_its_position() {
        let script = "print(\"a\");\n  print(42);\nprint([1, 'c']);\nprint(#{k: true});\nprint();\nprint('x'); print(1.5); print(false); print(());\n";
        let events = run(script);
        let positions: Vec<&str> = events.iter().map(|e| field(e, "script")).collect();
        assert_eq!(
            positions,
            [
                "rb.rhai:1:1",
                "rb.rhai:2:3",
                "rb.rhai:3:1",
                "rb.rhai:4:1",
                "rb.rhai:5:1",
                "rb.rhai:6:1",
                "rb.rhai:6:13",
                "rb.rhai:6:25",
                "rb.rhai:6:39",
            ]
        );
        // The text is what Rhai's own print shows.
        let texts: Vec<&str> = events.iter().map(|e| field(e, "message")).collect();
        assert_eq!(texts, stock_prints(script));
        assert_eq!(texts[..2], ["runbook: a", "runbook: 42"]);
    }

    #[test]
    fn printed_and_debugged_secrets_are_redacted() {
        let events = run("let p = \"pw hunter2\";\nprint(p);\ndebug(p);\n");
        let text = format!("{events:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(field(&events[0], "script"), "rb.rhai:2:1");
        assert_eq!(field(&events[1], "script"), "rb.rhai:3:1");
    }
}
