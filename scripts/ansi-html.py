#!/usr/bin/env python3
"""Turns a terminal capture with colours (`tmux capture-pane -e -p`) on stdin into an HTML
page on stdout: one <pre>, a <span> per run of the same SGR attributes (16, 256 and 24-bit
colours, bold, italic, underline, reverse). For scripts/editor-screenshot.sh."""
import html
import re
import sys

FG, BG = "#d0d0d0", "#1c1c1c"
BASE = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
        "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"]


def xterm(n):
    if n < 16:
        return BASE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    g = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (g, g, g)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = self.bg = None
        self.bold = self.italic = self.underline = self.reverse = False

    def apply(self, params):
        codes = [int(p) if p else 0 for p in params.replace(":", ";").split(";")] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASE[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASE[c - 90 + 8]
            elif 40 <= c <= 47:
                self.bg = BASE[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASE[c - 100 + 8]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = xterm(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    colour = None
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1

    def css(self):
        fg, bg = self.fg or FG, self.bg or BG
        if self.reverse:
            fg, bg = bg, fg
        out = []
        if fg != FG:
            out.append("color:" + fg)
        if bg != BG:
            out.append("background:" + bg)
        if self.bold:
            out.append("font-weight:bold")
        if self.italic:
            out.append("font-style:italic")
        if self.underline:
            out.append("text-decoration:underline")
        return ";".join(out)


def main():
    style = Style()
    out = []
    for line in sys.stdin.read().rstrip("\n").split("\n"):
        pieces = []
        for part in re.split(r"(\x1b\[[0-9;:]*m)", line):
            m = re.fullmatch(r"\x1b\[([0-9;:]*)m", part)
            if m:
                style.apply(m.group(1))
            elif part:
                css = style.css()
                text = html.escape(part)
                pieces.append('<span style="%s">%s</span>' % (css, text) if css else text)
        out.append("".join(pieces))
    print("<!doctype html><meta charset=utf-8><style>"
          "body{margin:0;padding:14px;background:%s}"
          "pre{margin:0;color:%s;font:15px/19px 'DejaVu Sans Mono',monospace}"
          "</style><pre>%s</pre>" % (BG, FG, "\n".join(out)))


main()
