// fleetbook for VS Code: starts `fleetbook lsp` for the `.rhai` files of every workspace
// folder that holds a fleetbook project (a fleetbook.toml, at its top or below). Plain
// JavaScript, so that the extension needs no build step: `vsce package` ships this file.
'use strict';

const path = require('path');
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client = null;

/** The document selector: `.rhai` files under each directory that has a fleetbook.toml. */
async function projectSelector() {
  const found = await vscode.workspace.findFiles('**/fleetbook.toml', '**/{node_modules,target,.git}/**');
  return found.map((uri) => ({
    scheme: 'file',
    language: 'rhai',
    pattern: path.join(path.dirname(uri.fsPath), '**', '*.rhai'),
  }));
}

/** How to start the server, from the settings: `fleetbook lsp` by default. */
function serverOptions() {
  const config = vscode.workspace.getConfiguration('fleetbook');
  const command = config.get('server.path', 'fleetbook');
  const args = config.get('server.args', ['lsp']);
  const run = { command, args, transport: TransportKind.stdio };
  return { run, debug: run };
}

async function start() {
  const documentSelector = await projectSelector();
  if (documentSelector.length === 0) {
    return;
  }
  client = new LanguageClient('fleetbook', 'fleetbook', serverOptions(), {
    documentSelector,
    synchronize: {
      // A module or the project file changed on disk: the server checks open runbooks again.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/{*.rhai,fleetbook.toml}'),
    },
  });
  await client.start();
}

async function stop() {
  if (client) {
    const c = client;
    client = null;
    await c.stop();
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('fleetbook.restartServer', async () => {
      await stop();
      await start();
    }),
  );
  try {
    await start();
  } catch (e) {
    vscode.window.showErrorMessage(
      `fleetbook: could not start \`fleetbook lsp\` (${e.message || e}); set fleetbook.server.path to the fleetbook binary`,
    );
  }
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
