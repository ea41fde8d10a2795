"""Price quotes. `quote` has grown by accretion: the demo's code-smell diagnostics point at it."""

from inventory import Inventory


def quote(inventory: Inventory, name, quantity, coupon, region, loyalty_years, express):
    item = inventory.items.get(name)
    if item is None:
        return None
    total = item.price * quantity
    if coupon:
        if coupon.startswith("VIP"):
            if loyalty_years > 5:
                total *= 0.7
            else:
                total *= 0.8
        elif coupon.startswith("SALE"):
            for _ in range(quantity // 10):
                if total > 100:
                    total -= 5
                else:
                    break
    if region == "EU":
        total *= 1.2
    elif region == "US":
        if express and quantity > 3:
            total += 15
        elif express:
            total += 10
    else:
        total *= 1.1 if express else 1.05
    return round(total, 2)
