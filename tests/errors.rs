//! Bad input: each gets a clear message (snapshotted) and exit code 2.

use crate::support::fleetbook;

fn bad(args: &[&str]) -> String {
    let out = fleetbook(args).code(2);
    assert_eq!(out.stdout, "", "nothing on stdout for an error");
    out.stderr
}

#[test]
fn syntax_error_has_line_column_and_caret() {
    insta::assert_snapshot!(bad(&["check", "tests/fixtures/bad/syntax.rhai"]));
}

#[test]
fn role_cycle_names_the_whole_cycle() {
    insta::assert_snapshot!(bad(&["check", "tests/fixtures/bad/cycle.rhai"]));
}

#[test]
fn unknown_role_lists_known_roles() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "tests/fixtures/bad/unknown-role.rhai",
        "-i",
        "tests/fixtures/small.ini"
    ]));
}

// Issue 10 #6: `pkg::remove(h, "~i")` handed apt-get a pattern matching every installed
// package; refused at plan time with the operation, the value and the script line.
#[test]
fn package_pattern_is_refused_with_its_line() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "tests/fixtures/bad/operand.rhai",
        "-i",
        "tests/fixtures/small.ini"
    ]));
}

#[test]
fn unknown_param_is_refused() {
    insta::assert_snapshot!(bad(&[
        "check",
        "runbooks/jiocloud-rolling.rhai",
        "--param",
        "verison=2025.1"
    ]));
}

#[test]
fn param_of_the_wrong_type_is_refused() {
    let err = bad(&[
        "check",
        "runbooks/starlingx-patch.rhai",
        "--param",
        "max_parallel_worker_hosts=many",
    ]);
    assert!(err.contains("expected an integer"), "{err}");
}

#[test]
fn escaping_import_is_refused() {
    insta::assert_snapshot!(bad(&["check", "tests/fixtures/bad/escape.rhai"]));
}

#[test]
fn runaway_loop_is_stopped() {
    insta::assert_snapshot!(bad(&["check", "tests/fixtures/bad/loop.rhai"]));
}

#[test]
fn a_step_that_throws_at_plan_time_names_host_and_step() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "tests/fixtures/bad/step-throws.rhai",
        "-i",
        "tests/fixtures/small.ini"
    ]));
}

#[test]
fn malformed_ini_inventory() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "tests/fixtures/bad/inventory.ini"
    ]));
}

#[test]
fn malformed_yaml_inventory() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "tests/fixtures/bad/inventory.yml"
    ]));
}

#[test]
fn malformed_toml_inventory() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "tests/fixtures/bad/inventory.toml"
    ]));
}

#[test]
fn limit_matching_nothing() {
    insta::assert_snapshot!(bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "examples/inventories/jiocloud.ini",
        "--limit",
        "compute:&controller"
    ]));
    let typo = bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "examples/inventories/jiocloud.ini",
        "--limit",
        "comptue",
    ]);
    assert!(
        typo.contains("\"comptue\" matches no host or group"),
        "{typo}"
    );
}

#[test]
fn missing_files_are_named() {
    let err = bad(&["check", "no/such.rhai"]);
    assert!(err.contains("cannot read no/such.rhai"), "{err}");
    let err = bad(&[
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "no/such.ini",
    ]);
    assert!(err.contains("cannot read no/such.ini"), "{err}");
}

#[test]
fn malformed_param_argument() {
    let out = fleetbook(&[
        "check",
        "runbooks/jiocloud-rolling.rhai",
        "--param",
        "novalue",
    ])
    .code(2);
    assert!(out.stderr.contains("expected KEY=VALUE"), "{}", out.stderr);
}
