//! Compiler: runbook model + inventory (+ `--limit`) -> a DAG of tasks. Takes a [`Script`]'s
//! model and an [`Inventory`]; gives a [`Graph`] whose nodes are (host, step) tasks plus
//! once/role/gate/approval nodes and role barriers. Limits are not edges: they are carried
//! as [`Rules`] for the scheduler and the executor.

use crate::error::{Error, Pos, Result, SourceDiag};
use crate::inventory::{pattern, Inventory};
use crate::model::{Amount, Runbook, Scope};
use crate::script::Script;
use crate::shared::Shared;
use crate::shared::{NameMap, NameSet};
use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graphmap::DiGraphMap;
use std::time::Duration;

/// Estimated duration of a step that declares no `.estimate(...)`: one unit.
pub const UNIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PlanHost {
    pub name: String,
    /// Roles in role order.
    pub roles: Vec<usize>,
    /// Variables as text: for commands, limits by variable, secrets and the plan.
    pub vars: NameMap<String, String>,
    /// The variables whose inventory type their text does not tell (numbers, bools, lists,
    /// maps, null), as typed values: what `h.var(name)` returns. A string is only in `vars`
    /// (`Host::value` reads a name missing here from its text, the same string): most
    /// inventories hold only strings, and a second copy of them would double every host's
    /// variables.
    pub values: crate::inventory::Vars,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub hosts: Vec<usize>,
    /// Roles this one waits for (direct predecessors).
    pub after: Vec<usize>,
    pub limit: Option<usize>,
    pub limit_decl: Option<Amount>,
    pub max_failures: Option<usize>,
    pub canary: Option<usize>,
    /// True when the runbook names the role (not just a group that holds hosts).
    pub named: bool,
    /// The nearest role whose inventory group has this one among its children (nested
    /// groups: `php_cluster` within `members`). Pictures draw it inside that role.
    pub within: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Once,
    BeforeRole,
    Host,
    AfterRole,
    Gate,
    CanaryGate,
    Approval,
    /// A barrier: every host of a role (or of its canary) is done. Runs nothing.
    RoleDone,
    CanaryDone,
    /// `rb.before_each_host`: a host's first task; false or an error halts the run.
    HostCheck,
    /// `rb.finally`: after everything else, whatever the run's outcome.
    Finally,
}

impl TaskKind {
    /// The name plans, events and the journal use.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Once => "once",
            TaskKind::BeforeRole => "before_role",
            TaskKind::Host => "host",
            TaskKind::AfterRole => "after_role",
            TaskKind::Gate => "gate",
            TaskKind::CanaryGate => "canary_gate",
            TaskKind::Approval => "approval",
            TaskKind::RoleDone => "role_done",
            TaskKind::CanaryDone => "canary_done",
            TaskKind::HostCheck => "host_check",
            TaskKind::Finally => "finally",
        }
    }

    /// Tasks that belong to one host and run inside its slot.
    pub fn is_host(self) -> bool {
        matches!(self, TaskKind::Host | TaskKind::HostCheck)
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    /// Shared: the plan shows the same id (one allocation for both).
    pub id: Shared,
    pub kind: TaskKind,
    pub host: Option<usize>,
    /// Index into the runbook's steps; none for barriers.
    pub step: Option<usize>,
    pub role: Option<usize>,
    pub deps: Deps,
    pub duration: u64,
}

/// How many dependencies a task keeps in itself before they take an allocation of their own.
const INLINE_DEPS: usize = 4;

/// A task's dependencies: task indices, ascending, without repeats. Nearly every task waits
/// for one or two others (its host's previous step, its roles' entries), so up to
/// [`INLINE_DEPS`] are kept in the task itself: a graph of a task per host and step makes no
/// allocation per task for them. `u32` indices: a graph of 2^32 tasks would not fit in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Deps(DepsRepr);

#[derive(Clone, PartialEq, Eq)]
enum DepsRepr {
    Inline { len: u8, items: [u32; INLINE_DEPS] },
    Heap(Box<[u32]>),
}

// As large as the `Vec<usize>` it replaces, without its allocation.
const _: () = assert!(std::mem::size_of::<Deps>() <= 24);

impl Deps {
    /// The dependencies on these tasks (in any order, repeats allowed).
    fn of(tasks: &[usize]) -> Deps {
        // Most tasks wait for one or two others: sorted on the stack, without a Vec.
        if tasks.len() <= INLINE_DEPS {
            let mut items = [0; INLINE_DEPS];
            tasks
                .iter()
                .zip(&mut items)
                .for_each(|(&t, i)| *i = task_index(t));
            let items = &mut items[..tasks.len()];
            items.sort_unstable();
            let len = dedup_sorted(items);
            return Deps::sorted(&items[..len]);
        }
        let mut items: Vec<u32> = tasks.iter().map(|&t| task_index(t)).collect();
        items.sort_unstable();
        items.dedup();
        Deps::sorted(&items)
    }

    /// From indices already ascending and without repeats.
    fn sorted(items: &[u32]) -> Deps {
        if items.len() <= INLINE_DEPS {
            let mut inline = [0; INLINE_DEPS];
            inline[..items.len()].copy_from_slice(items);
            Deps(DepsRepr::Inline {
                len: items.len() as u8,
                items: inline,
            })
        } else {
            Deps(DepsRepr::Heap(items.into()))
        }
    }

    /// The tasks depended on, as indices into [`Graph::tasks`].
    pub fn indices(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.iter().map(|&t| t as usize)
    }
}

/// Dependencies read back from elsewhere (a saved plan's `depends_on`): kept as a set.
impl FromIterator<usize> for Deps {
    fn from_iter<I: IntoIterator<Item = usize>>(tasks: I) -> Deps {
        Deps::of(&tasks.into_iter().collect::<Vec<_>>())
    }
}

impl Default for Deps {
    fn default() -> Deps {
        Deps::sorted(&[])
    }
}

impl std::ops::Deref for Deps {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match &self.0 {
            DepsRepr::Inline { len, items } => &items[..*len as usize],
            DepsRepr::Heap(items) => items,
        }
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Moves the distinct items of a sorted slice to its front; how many there are.
fn dedup_sorted(items: &mut [u32]) -> usize {
    let mut len = 0;
    for i in 0..items.len() {
        if len == 0 || items[i] != items[len - 1] {
            items[len] = items[i];
            len += 1;
        }
    }
    len
}

/// A task index as [`Deps`] keeps it.
fn task_index(t: usize) -> u32 {
    // Every task holds at least its id and this entry: 2^32 of them would not fit in memory.
    u32::try_from(t).expect("a graph holds fewer than 2^32 tasks")
}

/// Limits as the scheduler and executor enforce them, resolved against the host counts.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub total: Option<usize>,
    /// (variable, max in flight per distinct value)
    pub by: Vec<(String, usize)>,
    pub batches: bool,
    /// Per step index.
    pub throttle: Vec<Option<usize>>,
    /// Per step index: seconds a host keeps its slot after the step succeeds.
    pub soak: Vec<Option<u64>>,
    /// `rb.deadline(...)`: no host starts after this long from an attempt's start.
    pub deadline: Option<std::time::Duration>,
    /// `rb.max_failures_total(...)`, resolved against the planned hosts.
    pub max_failures_total: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub hosts: Vec<PlanHost>,
    /// In role order (a topological order of `.order`/`.after`).
    pub roles: Vec<Role>,
    pub tasks: Vec<Task>,
    /// Per host: its tasks in step order.
    pub host_tasks: Vec<Vec<usize>>,
    pub rules: Rules,
    pub warnings: Vec<String>,
    /// Inventory hosts that `--limit` left out: the runbook can read them (`hosts(role)`,
    /// `host(name)`), the run does not act on them.
    pub outside: Vec<PlanHost>,
    /// Every inventory group (but `all`) with its hosts, in inventory order.
    pub groups: NameMap<String, Vec<String>>,
    /// Per task: it cannot start because a role it needs is held (`rb.limit(role, 0)`).
    pub held: Vec<bool>,
    /// `rb.become(true)`: the default for hosts whose inventory does not set become.
    pub become_default: bool,
}

impl Graph {
    /// For each task, the tasks that depend on it, and how many tasks it waits for.
    pub fn dependents(&self) -> (Dependents, Vec<usize>) {
        dependents_of(&self.tasks)
    }
}

/// For each task, the tasks that depend on it (ascending), all in one array: a list per
/// task was an allocation per task, made again by every dispatcher.
#[derive(Debug, Clone)]
pub struct Dependents {
    /// Where each task's dependents start in `all`; one more entry for the end.
    starts: Vec<u32>,
    all: Vec<u32>,
}

impl Dependents {
    /// The tasks that depend on task `t`.
    pub fn of(&self, t: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        let (start, end) = (self.starts[t] as usize, self.starts[t + 1] as usize);
        self.all[start..end].iter().map(|&d| d as usize)
    }
}

fn dependents_of(tasks: &[Task]) -> (Dependents, Vec<usize>) {
    // Counted first, then filled in task order: each task's dependents ascend.
    let mut starts = vec![0u32; tasks.len() + 1];
    for task in tasks {
        task.deps.indices().for_each(|d| starts[d + 1] += 1);
    }
    for t in 0..tasks.len() {
        starts[t + 1] += starts[t];
    }
    let mut filled = starts.clone();
    let mut all = vec![0u32; starts[tasks.len()] as usize];
    for (t, task) in tasks.iter().enumerate() {
        for d in task.deps.indices() {
            all[filled[d] as usize] = task_index(t);
            filled[d] += 1;
        }
    }
    let waiting = tasks.iter().map(|task| task.deps.len()).collect();
    (Dependents { starts, all }, waiting)
}

fn at(script: &Script, pos: &Pos, message: String, label: &str) -> SourceDiag {
    let text = script
        .source_text(&pos.source)
        .unwrap_or_else(|| std::sync::Arc::from(""));
    SourceDiag::new(&pos.source, text, message).label_at(pos.line, pos.col, label)
}

/// Checks what needs no inventory: the role order must be acyclic.
pub fn validate(script: &Script) -> Result<Vec<String>> {
    let rb = &script.runbook;
    role_order(
        script,
        &rb.named_roles()
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>(),
    )?;
    let mut warnings = Vec::new();
    if !rb
        .steps
        .iter()
        .any(|s| matches!(s.scope, Scope::Host { .. }))
    {
        warnings.push(format!("runbook {:?} declares no per-host step", rb.name));
    }
    Ok(warnings)
}

/// Topological order of `roles` under the runbook's order edges; a cycle is an error that
/// names the whole cycle and where each of its edges was declared.
fn role_order(script: &Script, roles: &[String]) -> Result<Vec<String>> {
    let rb = &script.runbook;
    let mut g: DiGraphMap<&str, ()> = DiGraphMap::new();
    for r in roles {
        g.add_node(r);
    }
    for e in &rb.order {
        g.add_edge(&e.before, &e.after, ());
    }
    if toposort(&g, None).is_err() {
        return Err(cycle_error(script, &g));
    }
    // Kahn's algorithm, taking the earliest-listed ready role each time, so that roles the
    // order leaves free keep the order in which the runbook and inventory list them.
    let mut indegree: Vec<usize> = roles
        .iter()
        .map(|r| {
            g.neighbors_directed(r, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut done = vec![false; roles.len()];
    let mut out = Vec::with_capacity(roles.len());
    while let Some(i) = (0..roles.len()).find(|&i| !done[i] && indegree[i] == 0) {
        done[i] = true;
        out.push(roles[i].clone());
        for n in g.neighbors(&roles[i]) {
            if let Some(j) = roles.iter().position(|r| r == n) {
                indegree[j] -= 1;
            }
        }
    }
    Ok(out)
}

fn cycle_error(script: &Script, g: &DiGraphMap<&str, ()>) -> Error {
    let rb = &script.runbook;
    let scc = kosaraju_scc(g)
        .into_iter()
        .find(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .unwrap_or_default();
    // Walk inside the component until a node repeats: that walk is a cycle.
    let members: NameSet<&str> = scc.iter().copied().collect();
    let start = members.iter().copied().min().unwrap_or_default();
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = g
            .neighbors(cur)
            .filter(|n| members.contains(n))
            .min()
            .unwrap_or(start);
        if let Some(i) = path.iter().position(|p| *p == next) {
            path.drain(..i);
            path.push(next);
            break;
        }
        path.push(next);
        cur = next;
    }
    let edges: Vec<&crate::model::OrderEdge> = path
        .windows(2)
        .filter_map(|w| {
            rb.order
                .iter()
                .find(|e| e.before == w[0] && e.after == w[1])
        })
        .collect();
    let message = format!("role order has a cycle: {}", path.join(" -> "));
    let first = edges.first().map(|e| e.pos.clone()).unwrap_or_default();
    let mut d = at(script, &first, message, "");
    d.labels.clear();
    let mut elsewhere = Vec::new();
    for e in &edges {
        let label = format!("{} -> {} declared here", e.before, e.after);
        if e.pos.source == first.source {
            d = d.label_at(e.pos.line, e.pos.col, label);
        } else {
            elsewhere.push(format!("{label}: {}", e.pos));
        }
    }
    let mut help = "remove one of these order edges".to_string();
    if !elsewhere.is_empty() {
        help = format!("{help}; also {}", elsewhere.join("; "));
    }
    d.help(help).code("cycle").into()
}

fn known_roles_help(inv: &Inventory) -> String {
    let names: Vec<&str> = inv
        .groups
        .keys()
        .map(String::as_str)
        .filter(|g| *g != "ungrouped")
        .collect();
    format!("groups in {}: {}", inv.source, names.join(", "))
}

/// A string value that its text form holds as it is.
fn is_its_text(value: &serde_json::Value, text: Option<&String>) -> bool {
    matches!((value, text), (serde_json::Value::String(v), Some(t)) if v == t)
}

/// Compiles the script's runbook against an inventory.
pub fn compile(script: &Script, inv: &Inventory, limit: Option<&str>) -> Result<Graph> {
    let rb = &script.runbook;
    let mut warnings = Vec::new();
    let selected: NameSet<String> = match limit {
        Some(p) => pattern::select(inv, p)?,
        None => inv.hosts.keys().cloned().collect(),
    };
    if selected.is_empty() {
        return Err(Error::input(format!(
            "inventory {} has no hosts",
            inv.source
        )));
    }

    // Roles: every group that lists a selected host directly, plus every group the runbook
    // names (which may be a group that only gathers others, or even `all`).
    let named = rb.named_roles();
    check_named_roles(script, inv, &named)?;
    let mut role_names: NameSet<String> = named.iter().map(|(r, _)| r.clone()).collect();
    for h in &selected {
        for g in inv.direct_groups(h) {
            role_names.insert(g);
        }
    }
    let order = role_order(script, &role_names.iter().cloned().collect::<Vec<_>>())?;
    let role_index: NameMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();

    let mut all_values = inv.all_host_values();
    let mut plan_host = |h: &String| {
        let typed = all_values.swap_remove(h).unwrap_or_default();
        let vars = inv.text_vars(&typed);
        let values = typed
            .into_iter()
            .filter(|(k, v)| !is_its_text(v, vars.get(k)))
            .collect();
        PlanHost {
            name: h.clone(),
            roles: Vec::new(),
            vars,
            values,
        }
    };
    let mut hosts: Vec<PlanHost> = selected.iter().map(&mut plan_host).collect();
    let host_index: NameMap<&str, usize> = selected
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let mut roles = empty_roles(&order, &named);
    for (ri, within) in enclosing_roles(inv, &order).into_iter().enumerate() {
        roles[ri].within = within;
    }
    let members = Members {
        inv,
        host_index: &host_index,
        limit,
        named: &named,
    };
    members.assign(&mut roles, &mut hosts, &mut warnings);
    for e in &rb.order {
        let (b, a) = (role_index[e.before.as_str()], role_index[e.after.as_str()]);
        if !roles[a].after.contains(&b) {
            roles[a].after.push(b);
        }
    }

    resolve_limits(rb, &mut roles);
    let rules = rules_of(rb, hosts.len());
    warn_unused_limit_by(rb, &hosts, &mut warnings);

    check_self_waits(&hosts, &roles)?;
    let (tasks, host_tasks) = build_tasks(rb, &hosts, &roles);
    let held = held_tasks(&tasks, &host_tasks, &roles);
    warn_held(&roles, &mut warnings);
    let outside = inv
        .hosts
        .keys()
        .filter(|h| !selected.contains(*h))
        .map(plan_host)
        .collect();
    let groups = groups_of(inv);
    Ok(Graph {
        hosts,
        roles,
        tasks,
        host_tasks,
        rules,
        warnings,
        outside,
        groups,
        held,
        become_default: rb.become_default,
    })
}

/// The roles in order, before hosts join them.
fn empty_roles(order: &[String], named: &[(String, Pos)]) -> Vec<Role> {
    order
        .iter()
        .map(|r| Role {
            name: r.clone(),
            hosts: Vec::new(),
            after: Vec::new(),
            limit: None,
            limit_decl: None,
            max_failures: None,
            canary: None,
            named: named.iter().any(|(n, _)| n == r),
            within: None,
        })
        .collect()
}

/// What decides which planned hosts are in which role.
struct Members<'a> {
    inv: &'a Inventory,
    host_index: &'a NameMap<&'a str, usize>,
    limit: Option<&'a str>,
    named: &'a [(String, Pos)],
}

impl Members<'_> {
    /// Puts each planned host in its roles; a role left without hosts is a warning.
    fn assign(&self, roles: &mut [Role], hosts: &mut [PlanHost], warnings: &mut Vec<String>) {
        for (ri, role) in roles.iter_mut().enumerate() {
            for h in self.inv.members(&role.name) {
                if let Some(&hi) = self.host_index.get(h.as_str()) {
                    role.hosts.push(hi);
                    hosts[hi].roles.push(ri);
                }
            }
            if role.hosts.is_empty() {
                let after_limit = if self.limit.is_some() {
                    " after --limit"
                } else {
                    ""
                };
                warnings.push(match self.named.iter().find(|(n, _)| *n == role.name) {
                    Some((_, pos)) => format!(
                        "role {:?} (named at {pos}) has no hosts{after_limit}: what the runbook declares for it does nothing",
                        role.name
                    ),
                    None => format!("role {:?} has no hosts{after_limit}", role.name),
                });
            }
        }
    }
}

fn warn_unused_limit_by(rb: &Runbook, hosts: &[PlanHost], warnings: &mut Vec<String>) {
    for l in &rb.limit_by {
        if !hosts.iter().any(|h| h.vars.contains_key(&l.var)) {
            warnings.push(format!(
                "limit_by({:?}, {}): no planned host has that variable",
                l.var, l.max
            ));
        }
    }
}

fn warn_held(roles: &[Role], warnings: &mut Vec<String>) {
    for r in roles
        .iter()
        .filter(|r| r.limit == Some(0) && !r.hosts.is_empty())
    {
        warnings.push(format!(
            "role {:?} is held (limit 0): none of its {} host(s) start, nor what waits for them",
            r.name,
            r.hosts.len()
        ));
    }
}

/// Every inventory group (but `all`) with its hosts, in inventory order.
fn groups_of(inv: &Inventory) -> NameMap<String, Vec<String>> {
    inv.groups
        .keys()
        .filter(|g| *g != "all")
        .map(|g| (g.clone(), inv.members(g).into_iter().collect()))
        .collect()
}

/// Every role the runbook names must be a group of the inventory.
fn check_named_roles(script: &Script, inv: &Inventory, named: &[(String, Pos)]) -> Result<()> {
    for (r, pos) in named {
        if !inv.groups.contains_key(r) {
            return Err(at(
                script,
                pos,
                format!(
                    "unknown role {r:?}: the inventory {} has no such group",
                    inv.source
                ),
                "named here",
            )
            .help(known_roles_help(inv))
            .code("unknown-role")
            .into());
        }
    }
    Ok(())
}

/// Limits, failure budgets and canaries per role, resolved against its number of hosts
/// (`"*"` is the default for roles with none of their own).
fn resolve_limits(rb: &Runbook, roles: &mut [Role]) {
    let star =
        |list: &[crate::model::RoleAmount]| list.iter().find(|l| l.role == "*").map(|l| l.amount);
    let (star_limit, star_fail) = (star(&rb.limits), star(&rb.max_failures));
    for role in roles.iter_mut() {
        let own = rb
            .limits
            .iter()
            .find(|l| l.role == role.name)
            .map(|l| l.amount)
            .or(star_limit);
        role.limit_decl = own;
        role.limit = own.map(|a| match a {
            Amount::Count(0) => 0,
            a => a.of(role.hosts.len()).max(1),
        });
        role.max_failures = rb
            .max_failures
            .iter()
            .find(|l| l.role == role.name)
            .map(|l| l.amount)
            .or(star_fail)
            .map(|a| a.of(role.hosts.len()));
        role.canary = rb
            .canaries
            .iter()
            .find(|c| c.role == role.name)
            .map(|c| c.count as usize);
    }
}

/// The run-wide rules: total limit, `limit_by`, batches, throttles, soaks, deadline and
/// the run-wide failure budget.
fn rules_of(rb: &Runbook, n_hosts: usize) -> Rules {
    Rules {
        total: rb.limit_total.as_ref().map(|(a, _)| a.of(n_hosts).max(1)),
        by: rb
            .limit_by
            .iter()
            .map(|l| (l.var.clone(), l.max as usize))
            .collect(),
        batches: rb.batches,
        throttle: rb
            .steps
            .iter()
            .map(|s| s.throttle.map(|t| t as usize))
            .collect(),
        soak: rb
            .steps
            .iter()
            .map(|s| s.soak.map(|d| d.as_secs()))
            .collect(),
        deadline: rb.deadline.as_ref().map(|(d, _)| *d),
        max_failures_total: rb.max_failures_total.as_ref().map(|(a, _)| a.of(n_hosts)),
    }
}

/// Tasks that can never start because they are, or wait for, a host of a held role (limit
/// 0). `finally` tasks are never held: they run whatever happened.
/// For each role, the nearest role whose group lists it as a child, directly or through
/// groups that are not roles (breadth first: the closest ancestor wins, then inventory order).
fn enclosing_roles(inv: &Inventory, order: &[String]) -> Vec<Option<usize>> {
    let mut parents: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for (g, group) in &inv.groups {
        for c in &group.children {
            parents.entry(c.as_str()).or_default().push(g.as_str());
        }
    }
    let index = |n: &str| order.iter().position(|r| r == n);
    order
        .iter()
        .map(|r| {
            let mut seen: NameSet<&str> = NameSet::default();
            let mut level: Vec<&str> = vec![r.as_str()];
            while !level.is_empty() {
                let next: Vec<&str> = level
                    .iter()
                    .flat_map(|g| parents.get(g).into_iter().flatten().copied())
                    .filter(|g| seen.insert(g))
                    .collect();
                if let Some(i) = next.iter().find_map(|g| index(g)) {
                    return Some(i);
                }
                level = next;
            }
            None
        })
        .collect()
}

fn held_tasks(tasks: &[Task], host_tasks: &[Vec<usize>], roles: &[Role]) -> Vec<bool> {
    let mut held = vec![false; tasks.len()];
    let mut queue: Vec<usize> = Vec::new();
    for (ri, r) in roles.iter().enumerate().filter(|(_, r)| r.limit == Some(0)) {
        for &h in &r.hosts {
            queue.extend(host_tasks[h].iter().copied());
        }
        // The role's own hooks too: a `before_role` that disables a scheduler must not run
        // for a role that does not start.
        queue.extend(
            tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.role == Some(ri) && t.host.is_none())
                .map(|(i, _)| i),
        );
    }
    // Most runbooks hold no role back: then nothing is held, and the dependents (a list per
    // task) need not be made.
    if queue.is_empty() {
        return held;
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (t, task) in tasks.iter().enumerate() {
        for d in task.deps.indices() {
            dependents[d].push(t);
        }
    }
    while let Some(t) = queue.pop() {
        if held[t] || tasks[t].kind == TaskKind::Finally {
            continue;
        }
        held[t] = true;
        queue.extend(dependents[t].iter().copied());
    }
    held
}

/// A host in roles A and B where B must (through other roles) wait for A would wait for
/// itself. Roles a host belongs to are left out of its wait set; anything else is an error.
fn check_self_waits(hosts: &[PlanHost], roles: &[Role]) -> Result<()> {
    let n = roles.len();
    // ancestors[r]: roles that r waits for, transitively. Roles are in topological order.
    let mut ancestors: Vec<Vec<bool>> = vec![vec![false; n]; n];
    for r in 0..n {
        for &p in &roles[r].after {
            ancestors[r][p] = true;
            let inherited = ancestors[p].clone();
            for (mine, theirs) in ancestors[r].iter_mut().zip(inherited) {
                *mine |= theirs;
            }
        }
    }
    for h in hosts {
        for &r in &h.roles {
            for &w in &roles[r].after {
                if h.roles.contains(&w) {
                    continue;
                }
                if let Some(&own) = h.roles.iter().find(|&&o| ancestors[w][o]) {
                    return Err(Error::input_with_help(
                        format!(
                            "host {} is in roles {} and {}, but {} waits for {}, which waits for {}: the host would wait for itself",
                            h.name, roles[own].name, roles[r].name, roles[r].name, roles[w].name, roles[own].name
                        ),
                        "take the host out of one of these groups, or leave it out of the run with --limit",
                    ));
                }
            }
        }
    }
    Ok(())
}

struct Builder {
    tasks: Vec<Task>,
    /// Dependencies given to a task after it was made (a role's exit waits for each of its
    /// hosts' last step): (task, dependency), merged into the tasks by `merge_late`.
    late: Vec<(usize, usize)>,
    /// Where a task's id is formatted before it is copied, once, into its `Shared`.
    id: String,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        id: &[&str],
        kind: TaskKind,
        host: Option<usize>,
        step: Option<usize>,
        role: Option<usize>,
        deps: &[usize],
        duration: u64,
    ) -> usize {
        // The id's parts copied in turn (a task per host and step: the formatting machinery
        // cost more than the copies).
        self.id.clear();
        id.iter().for_each(|part| self.id.push_str(part));
        self.tasks.push(Task {
            id: Shared::from(self.id.as_str()),
            kind,
            host,
            step,
            role,
            deps: Deps::of(deps),
            duration,
        });
        self.tasks.len() - 1
    }

    /// Task `t` also waits for task `dep`.
    fn wait(&mut self, t: usize, dep: usize) {
        self.late.push((t, dep));
    }

    /// Gives the tasks the dependencies `wait` noted.
    fn merge_late(&mut self) {
        let mut late = std::mem::take(&mut self.late);
        late.sort_unstable();
        for group in late.chunk_by(|a, b| a.0 == b.0) {
            let t = group[0].0;
            let mut all: Vec<usize> = self.tasks[t].deps.indices().collect();
            all.extend(group.iter().map(|&(_, d)| d));
            self.tasks[t].deps = Deps::of(&all);
        }
    }

    /// Adds `steps` as a chain after `deps`; returns the last task (or `deps` unchanged).
    fn chain(
        &mut self,
        rb: &Runbook,
        steps: &[usize],
        kind: TaskKind,
        role: Option<(usize, &str)>,
        mut deps: Vec<usize>,
    ) -> Vec<usize> {
        for &s in steps {
            let step = &rb.steps[s];
            let prefix = match kind {
                TaskKind::Once => "once".to_string(),
                TaskKind::BeforeRole => format!("before:{}", role.map_or("", |r| r.1)),
                TaskKind::AfterRole => format!("after:{}", role.map_or("", |r| r.1)),
                TaskKind::Gate => format!("gate:{}", role.map_or("", |r| r.1)),
                TaskKind::CanaryGate => format!("canary-gate:{}", role.map_or("", |r| r.1)),
                TaskKind::Approval => format!("approval:{}", role.map_or("", |r| r.1)),
                TaskKind::Finally => "finally".to_string(),
                _ => String::new(),
            };
            let duration = if kind == TaskKind::Approval {
                0
            } else {
                step.estimate.unwrap_or(UNIT).as_secs()
            };
            let t = self.add(
                &[&prefix, ":", &step.name],
                kind,
                None,
                Some(s),
                role.map(|r| r.0),
                &deps,
                duration,
            );
            deps.clear();
            deps.push(t);
        }
        deps
    }
}

fn build_tasks(rb: &Runbook, hosts: &[PlanHost], roles: &[Role]) -> (Vec<Task>, Vec<Vec<usize>>) {
    let mut b = Builder {
        tasks: Vec::with_capacity(hosts.len() * rb.steps.len() + 4 * roles.len() + 8),
        late: Vec::new(),
        id: String::new(),
    };
    let onces = steps_of(rb, &|s| *s == Scope::Once);
    let after_onces = b.chain(rb, &onces, TaskKind::Once, None, Vec::new());
    let nodes = role_nodes(&mut b, rb, roles, &after_onces);
    let host_tasks = host_chains(&mut b, rb, hosts, roles, &nodes, &after_onces);
    b.merge_late();
    finally_tasks(&mut b, rb);
    (b.tasks, host_tasks)
}

/// The runbook's steps whose scope passes `pred`, in the order written.
fn steps_of(rb: &Runbook, pred: &dyn Fn(&Scope) -> bool) -> Vec<usize> {
    rb.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| pred(&s.scope))
        .map(|(i, _)| i)
        .collect()
}

// Role nodes first, with the dependencies on other roles' barriers filled in once all
// barriers exist; host tasks are then hung between each role's entry and exit.
struct RoleNodes {
    entry_first: Option<usize>,
    entry: Vec<usize>,
    canary_done: Option<usize>,
    release: Option<usize>,
    exit_first: usize,
    done: usize,
}

/// Each role's barriers and hooks, wired to the roles it comes after.
fn role_nodes(
    b: &mut Builder,
    rb: &Runbook,
    roles: &[Role],
    after_onces: &[usize],
) -> Vec<RoleNodes> {
    let mut nodes: Vec<RoleNodes> = Vec::with_capacity(roles.len());
    for (ri, role) in roles.iter().enumerate() {
        let before = steps_of(rb, &|s| *s == Scope::BeforeRole(role.name.clone()));
        let first_idx = b.tasks.len();
        let entry = b.chain(
            rb,
            &before,
            TaskKind::BeforeRole,
            Some((ri, &role.name)),
            Vec::new(),
        );
        let entry_first = (!before.is_empty()).then_some(first_idx);
        let (canary_done, release) = if role.canary.is_some() {
            let done = b.add(
                &["canary:", &role.name],
                TaskKind::CanaryDone,
                None,
                None,
                Some(ri),
                &entry,
                0,
            );
            let gates = steps_of(rb, &|s| *s == Scope::Gate(role.name.clone()));
            let last = b.chain(
                rb,
                &gates,
                TaskKind::CanaryGate,
                Some((ri, &role.name)),
                vec![done],
            );
            (Some(done), last.first().copied())
        } else {
            (None, None)
        };
        let exit_steps: Vec<usize> = rb
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.scope.role() == Some(role.name.as_str())
                    && !matches!(s.scope, Scope::BeforeRole(_))
            })
            .map(|(i, _)| i)
            .collect();
        let exit_first = b.tasks.len();
        let mut deps = entry.clone();
        for &s in &exit_steps {
            let kind = match rb.steps[s].scope {
                Scope::AfterRole(_) => TaskKind::AfterRole,
                Scope::Gate(_) => TaskKind::Gate,
                _ => TaskKind::Approval,
            };
            deps = b.chain(rb, &[s], kind, Some((ri, &role.name)), deps);
        }
        let done = b.add(
            &["done:", &role.name],
            TaskKind::RoleDone,
            None,
            None,
            Some(ri),
            &deps,
            0,
        );
        nodes.push(RoleNodes {
            entry_first,
            entry,
            canary_done,
            release,
            exit_first,
            done,
        });
    }
    for (ri, role) in roles.iter().enumerate() {
        let mut deps = after_onces.to_vec();
        deps.extend(role.after.iter().map(|&p| nodes[p].done));
        // Without before_role hooks the role's entry is the set of its own prerequisites.
        match nodes[ri].entry_first {
            Some(first) => deps.into_iter().for_each(|d| b.wait(first, d)),
            None => nodes[ri].entry = deps,
        }
    }
    // Roles without before hooks: their canary barrier and exit need the prerequisites too.
    for n in &nodes {
        if n.entry_first.is_none() {
            for &d in &n.entry {
                if let Some(c) = n.canary_done {
                    b.wait(c, d);
                }
                b.wait(n.exit_first, d);
            }
        }
    }
    nodes
}

/// Each host's chain of checks and steps, hung between its roles' entries and exits.
fn host_chains(
    b: &mut Builder,
    rb: &Runbook,
    hosts: &[PlanHost],
    roles: &[Role],
    nodes: &[RoleNodes],
    after_onces: &[usize],
) -> Vec<Vec<usize>> {
    let host_steps: Vec<(usize, &crate::model::Step)> = rb
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.scope == Scope::HostCheck)
        .chain(
            rb.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.scope, Scope::Host { .. })),
        )
        .collect();
    let mut host_tasks: Vec<Vec<usize>> = vec![Vec::new(); hosts.len()];
    let canary_hosts: Vec<Vec<usize>> = roles
        .iter()
        .map(|r| {
            r.canary
                .map(|n| r.hosts.iter().copied().take(n).collect())
                .unwrap_or_default()
        })
        .collect();
    for (h, host) in hosts.iter().enumerate() {
        let mut deps: Vec<usize> = after_onces.to_vec();
        for &r in &host.roles {
            deps.extend(nodes[r].entry.iter().copied());
            if let Some(rel) = nodes[r].release {
                if !canary_hosts[r].contains(&h) {
                    deps.push(rel);
                }
            }
        }
        // A host waits for the union of its roles' prerequisites, minus roles it is in.
        deps.retain(|&d| {
            !(b.tasks[d].kind == TaskKind::RoleDone
                && b.tasks[d].role.is_some_and(|r| host.roles.contains(&r)))
        });
        deps.sort_unstable();
        deps.dedup();
        let applies = |step: &crate::model::Step| match &step.scope {
            Scope::Host { roles: None } | Scope::HostCheck => true,
            Scope::Host { roles: Some(rs) } => {
                host.roles.iter().any(|&r| rs.contains(&roles[r].name))
            }
            _ => false,
        };
        // A host with no step of its own does not start, so it runs no check either.
        if !host_steps
            .iter()
            .any(|(_, s)| s.scope != Scope::HostCheck && applies(s))
        {
            continue;
        }
        for &(si, step) in host_steps.iter().filter(|(_, s)| applies(s)) {
            let (kind, prefix) = match step.scope {
                Scope::HostCheck => (TaskKind::HostCheck, "check"),
                _ => (TaskKind::Host, "host"),
            };
            let t = b.add(
                &[prefix, ":", &host.name, ":", &step.name],
                kind,
                Some(h),
                Some(si),
                host.roles.first().copied(),
                &deps,
                step.estimate.unwrap_or(UNIT).as_secs(),
            );
            host_tasks[h].push(t);
            deps.clear();
            deps.push(t);
        }
        if let Some(&last) = host_tasks[h].last() {
            for &r in &host.roles {
                b.wait(nodes[r].exit_first, last);
                if canary_hosts[r].contains(&h) {
                    if let Some(c) = nodes[r].canary_done {
                        b.wait(c, last);
                    }
                }
            }
        }
    }
    host_tasks
}

/// `finally` steps come after every other task (in the plan; the executor runs them at the
/// end of an attempt whatever happened).
fn finally_tasks(b: &mut Builder, rb: &Runbook) {
    let finals = steps_of(rb, &|s| *s == Scope::Finally);
    if !finals.is_empty() {
        let (dependents, _) = dependents_of(&b.tasks);
        let sinks: Vec<usize> = (0..b.tasks.len())
            .filter(|&t| dependents.of(t).len() == 0)
            .collect();
        b.chain(rb, &finals, TaskKind::Finally, None, sinks);
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::Format;
    use crate::plan::plan_text;
    use std::collections::BTreeMap;

    #[test]
    fn deps_are_a_sorted_set_inline_or_not() {
        let few = super::Deps::of(&[7, 2, 7]);
        assert_eq!(&*few, &[2, 7]);
        assert!(matches!(few.0, super::DepsRepr::Inline { .. }));
        let many: super::Deps = [9, 1, 5, 3, 1, 8].into_iter().collect();
        assert_eq!(many.indices().collect::<Vec<_>>(), [1, 3, 5, 8, 9]);
        assert!(matches!(many.0, super::DepsRepr::Heap(_)));
        assert!(super::Deps::default().is_empty());
    }

    fn plan_err(rb: &str, inv: &str) -> crate::Error {
        match plan_text(rb, inv, Format::Ini, &BTreeMap::new(), None) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn cycles_name_the_whole_cycle_and_each_edge() {
        let rb = "let rb = runbook(\"x\");\nrb.order([\"a\", \"b\"]);\nrb.after(\"c\", [\"b\"]);\nrb.after(\"a\", [\"c\"]);\nrb";
        let e = plan_err(rb, "[a]\n1\n[b]\n2\n[c]\n3\n");
        assert!(
            e.to_string()
                .contains("role order has a cycle: a -> b -> c -> a"),
            "{e}"
        );
        let crate::Error::Source(d) = e else { panic!() };
        let lines: Vec<usize> = d
            .labels
            .iter()
            .map(|l| rb[..l.offset()].matches('\n').count() + 1)
            .collect();
        assert_eq!(lines, [2, 3, 4]);
    }

    #[test]
    fn unknown_roles_list_the_known_ones() {
        let e = plan_err(
            "let rb = runbook(\"x\");\nrb.limit(\"cmopute\", 1);\nrb",
            "[compute]\nc1\n[controller]\nk1\n",
        );
        assert!(e.to_string().contains("unknown role \"cmopute\""), "{e}");
        let crate::Error::Source(d) = e else { panic!() };
        assert!(d
            .help
            .unwrap_or_default()
            .contains("all, compute, controller"));
    }

    #[test]
    fn a_host_that_would_wait_for_itself_is_an_error() {
        let rb = "let rb = runbook(\"x\");\nrb.order([\"a\", \"m\", \"b\"]);\nrb.step(\"s\", |h| h.run(\"x\"));\nrb";
        let e = plan_err(rb, "[a]\nboth\n[m]\nmid\n[b]\nboth\n");
        assert!(e.to_string().contains("would wait for itself"), "{e}");
    }

    #[test]
    fn a_host_in_two_ordered_roles_runs_with_the_first() {
        let rb = "let rb = runbook(\"x\");\nrb.order([\"a\", \"b\"]);\nrb.step(\"s\", |h| h.run(\"x\"));\nrb";
        let p = plan_text(
            rb,
            "[a]\nboth\na1\n[b]\nboth\nb1\n",
            Format::Ini,
            &BTreeMap::new(),
            None,
        )
        .unwrap()
        .plan;
        let start = |n: &str| p.hosts.iter().find(|h| h.name == n).unwrap().start;
        assert_eq!(start("both"), 0);
        assert!(start("b1") >= 60);
    }
}
