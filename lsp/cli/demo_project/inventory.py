"""A small inventory module: the sample project that `loopls demo` completes in."""

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0


@dataclass
class Inventory:
    items: dict[str, Item] = field(default_factory=dict)

    def add(self, item: Item) -> None:
        self.items[item.name] = item

    def total_value(self) -> float:
        return sum(item.price * item.quantity for item in self.items.values())

    def restock(self, name: str, amount: int) -> None:
        

    def cheapest(self) -> Item | None:
        if not self.items:
            return None
        return min(self.items.values(), key=lambda item: item.price)


def load_inventory(rows: list[tuple[str, float, int]]) -> Inventory:
    inventory = Inventory()
    for name, price, quantity in rows:
        inventory.add(Item(
    return inventory
