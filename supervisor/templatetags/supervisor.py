"""Small formatting helpers for the Supervisor Desk's figures."""

from django import template

from payments import lifecycle

register = template.Library()


@register.filter
def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


@register.filter
def duration(seconds: float | None) -> str:
    """`95.2` -> `1 min 35 s`; None -> `—`."""
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@register.filter
def bar_width(value: int, maximum: int) -> int:
    """Width in percent of a bar for `value` on a chart whose longest bar is `maximum`."""
    return round(100 * value / maximum) if maximum else 0


@register.simple_tag
def sort_query(current: str, column: str) -> str:
    """The `sort` value a column header links to: ascending first, then toggles."""
    return f"-{column}" if current == column else column


@register.filter
def display_name(user) -> str:
    return user.get_full_name() or user.get_username()


@register.filter
def in_currency(amount, currency: str) -> str:
    """An amount with its currency's decimal places and thousands separators: `89,961` JPY, `12.500` KWD."""
    return f"{lifecycle.quantize(amount, currency):,}"
