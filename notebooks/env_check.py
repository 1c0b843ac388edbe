"""The environment check of 00_start_here: what the notebooks need, and what is missing.

It only reads installed versions (nothing is installed or downloaded) and reports, in
Chinese for the students, every requirement with a tick or a cross and one line on how to
fix what is missing. It imports nothing from chatroom_async at module level, so it still
works (and says so) when the package itself is not installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

FIX = 'pip install -e ".[notebooks]"'


@dataclass(frozen=True)
class Requirement:
    """One thing the notebooks need: a distribution at a minimum version, or Python."""

    name: str  # the distribution name, or "python"
    minimum: tuple[int, ...]
    why: str  # what it is for, in Chinese


@dataclass(frozen=True)
class Row:
    requirement: Requirement
    found: str | None  # the installed version; None when missing
    ok: bool

    def line(self) -> str:
        r = self.requirement
        need = ".".join(map(str, r.minimum))
        if self.ok:
            return f"✅ {r.name} {self.found}（需要 ≥ {need}）：{r.why}"
        if self.found is None:
            return f"❌ 缺少 {r.name}（需要 ≥ {need}）：{r.why}"
        return f"❌ {r.name} {self.found} 版本太旧（需要 ≥ {need}）：{r.why}"


REQUIREMENTS = (
    Requirement("python", (3, 11), "本课程的代码使用 Python 3.11 的 asyncio"),
    Requirement("chatroom_async", (0, 1), "本章的异步任务处理器（本仓库的包）"),
    Requirement("fakeredis", (2, 41), "内嵌的 Redis：不需要安装 Redis 服务器"),
    Requirement("lupa", (2, 0), "让内嵌 Redis 运行 Lua 脚本（任务队列的原子操作）"),
    Requirement("jupyterlab", (4, 1), "JupyterLab 4.1 起才能直接显示 mermaid 架构图"),
    Requirement("ipywidgets", (8, 0), "实时仪表盘的控件"),
    Requirement("matplotlib", (3, 8), "画时间线和曲线"),
)


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "4.6.6" -> (4, 6, 6), "2.8rc1" -> (2, 8)."""
    numbers: list[int] = []
    for part in text.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(numbers)


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name` (or of Python), None if missing."""
    if name == "python":
        return ".".join(map(str, sys.version_info[:3]))
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_environment(version_of: Callable[[str], str | None] = installed_version,
                      *, show: bool = True) -> list[Row]:
    """Check every requirement; print a report in Chinese (if `show`); return the rows."""
    rows = []
    for req in REQUIREMENTS:
        found = version_of(req.name)
        ok = found is not None and parse_version(found) >= req.minimum
        rows.append(Row(req, found, ok))
    if show:
        print(report(rows))
    return rows


def report(rows: list[Row]) -> str:
    """The text `check_environment` prints."""
    lines = [row.line() for row in rows]
    missing = [row.requirement.name for row in rows if not row.ok]
    if not missing:
        lines.append("环境完整：所有笔记本都可以运行。")
        return "\n".join(lines)
    lines.append(f"还缺 {len(missing)} 项：{', '.join(missing)}。")
    if "python" in missing:
        lines.append("请先安装 Python 3.11 或更新的版本，再按 README 的步骤重新建立 .venv。")
    lines.append(f"修复方法：在项目根目录的终端里运行  {FIX}")
    lines.append("（或 bash scripts/lab.sh），然后在 JupyterLab 菜单 Kernel → Restart Kernel，"
                 "再运行这个单元。")
    if importlib.util.find_spec("chatroom_async") is None or sys.prefix == sys.base_prefix:
        lines.append(f"当前内核的 Python：{sys.executable}"
                     "（它应当是项目 .venv 里的 Python）")
    return "\n".join(lines)
