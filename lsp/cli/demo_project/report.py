"""Reports over an inventory."""

from inventory import Inventory


def low_stock(inventory: Inventory, threshold: int = 5) -> list[str]:
    return [name for name, item in inventory.items.items() if item.quantity < 
