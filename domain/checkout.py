"""The single-payer cart and its checkout: one buyer's cart at one store, then an Order.

A ``ShopCart`` holds one user's items at one store, with the TeamCart's item rules (options
priced from the product snapshot when added, quantities 1..``MAX_QUANTITY``). Its checkout
is a state machine that may go back until payment::

    cart --set_address--> address --set_delivery--> delivery --checkout--> payment
      ^                      |  ^                      |
      +---- (items change: stays where it is) ---------+
             set_address from address or delivery goes back to address

Totals come from the TeamCart's pricing (``Totals``, tax half-even by ``tax_for``): the
store's delivery fee for ``delivery`` (and until a method is chosen), none for ``pickup`` or
an empty cart, tax on the subtotal; no tip or coupon. ``checkout`` turns
the cart into an Order awaiting payment (``Order.start_single``): the cart is then
``checked_out`` and changes no more. ``absorb`` moves a guest's cart into the signed-in
user's (quantities of the same product and options added, within the stock there is); the
guest's cart is ``merged``, closed.

Like every aggregate: a ``version`` that each change bumps by one, and nothing recorded for
the outbox (a personal cart has no live view; its order does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from domain import errors
from domain.catalog import ProductSnapshot, StoreTerms, price_options
from domain.money import is_whole_number
from domain.order import DeliveryAddress, Order, OrderLine
from domain.pricing import Totals, tax_for
from domain.teamcart import MAX_QUANTITY, CartItem


class ShopCartStatus(StrEnum):
    OPEN = "open"
    CHECKED_OUT = "checked_out"  # it became an order
    MERGED = "merged"  # a guest's cart, moved into the signed-in user's


class CheckoutState(StrEnum):
    CART = "cart"
    ADDRESS = "address"
    DELIVERY = "delivery"
    PAYMENT = "payment"


class DeliveryMethod(StrEnum):
    DELIVERY = "delivery"  # the store's delivery fee
    PICKUP = "pickup"  # no fee


def _check_quantity(quantity: int) -> None:
    if not is_whole_number(quantity) or not 1 <= quantity <= MAX_QUANTITY:
        raise errors.InvalidQuantity()


class ShopCart:
    """One user's cart at one store (see the module docstring)."""

    def __init__(
        self,
        *,
        id: str,
        user_id: str,
        store: StoreTerms,
        status: ShopCartStatus,
        state: CheckoutState,
        items: Iterable[CartItem],
        address: DeliveryAddress | None,
        delivery_method: DeliveryMethod | None,
        order_id: str | None,
        created_at: datetime,
        version: int,
    ) -> None:
        self.id = id
        self.user_id = user_id
        self.store = store
        self.status = status
        self.state = state
        self._items: dict[str, CartItem] = {item.item_id: item for item in items}
        self.address = address
        self.delivery_method = delivery_method
        self.order_id = order_id
        self.created_at = created_at
        self.version = version

    @classmethod
    def open(cls, cart_id: str, user_id: str, store: StoreTerms, now: datetime) -> ShopCart:
        return cls(
            id=cart_id,
            user_id=user_id,
            store=store,
            status=ShopCartStatus.OPEN,
            state=CheckoutState.CART,
            items=(),
            address=None,
            delivery_method=None,
            order_id=None,
            created_at=now,
            version=1,
        )

    @property
    def items(self) -> Mapping[str, CartItem]:
        return self._items

    @property
    def currency(self) -> str:
        return self.store.currency

    def totals(self) -> Totals:
        """What the buyer pays: the items, the fee of the delivery method (the store's until
        one is chosen), tax on the subtotal."""
        subtotal = sum(item.line_total_minor for item in self._items.values())
        if not self._items or self.delivery_method is DeliveryMethod.PICKUP:
            fee = 0  # nothing to deliver yet, or nothing delivered
        else:
            fee = self.store.delivery_fee_minor
        tax = tax_for(subtotal, self.store.tax_rate_bps)
        return Totals(subtotal, fee, tax, 0, 0, subtotal + fee + tax)

    def _changed(self) -> None:
        self.version += 1

    def _require_open(self) -> None:
        if self.status is not ShopCartStatus.OPEN:
            raise errors.CartNotOpen(f"This cart is {self.status}: it changes no more.")

    # --- items ----------------------------------------------------------------------------

    def add_item(
        self, item_id: str, product: ProductSnapshot, quantity: int, options: Sequence[str]
    ) -> CartItem:
        """A line priced from the product and the chosen options; the same product with the
        same options again adds to that line's quantity."""
        self._require_open()
        if product.store_id != self.store.store_id:
            raise errors.ProductNotFound(f"Product {product.product_id!r} is not sold here.")
        _check_quantity(quantity)
        chosen, unit_price = price_options(product, options)
        same = next(
            (
                item
                for item in self._items.values()
                if item.product_id == product.product_id and item.options == chosen
            ),
            None,
        )
        if same is not None:
            _check_quantity(same.quantity + quantity)
            line = replace(same, quantity=same.quantity + quantity)
        else:
            if item_id in self._items:
                raise ValueError(f"item id {item_id!r} is already used in this cart")
            line = CartItem(
                item_id=item_id,
                user_id=self.user_id,
                product_id=product.product_id,
                name=product.name,
                unit_price_minor=unit_price,
                quantity=quantity,
                options=chosen,
            )
        self._items[line.item_id] = line
        self._changed()
        return line

    def _item(self, item_id: str) -> CartItem:
        item = self._items.get(item_id)
        if item is None:
            raise errors.ItemNotFound()
        return item

    def change_item_quantity(self, item_id: str, quantity: int) -> None:
        self._require_open()
        item = self._item(item_id)
        _check_quantity(quantity)
        if item.quantity != quantity:
            self._items[item_id] = replace(item, quantity=quantity)
            self._changed()

    def remove_item(self, item_id: str) -> None:
        self._require_open()
        self._item(item_id)
        del self._items[item_id]
        self._changed()

    # --- the checkout's steps -------------------------------------------------------------

    def set_address(self, address: DeliveryAddress) -> None:
        """Where it goes; from a later step this goes back to ``address`` (the delivery
        method is kept, to be confirmed again)."""
        self._require_open()
        if not self._items:
            raise errors.EmptyCart("Add something to the cart before the address.")
        self.address = address
        self.state = CheckoutState.ADDRESS
        self._changed()

    def set_delivery(self, method: DeliveryMethod) -> None:
        """Delivered (the store's fee) or picked up (none); after the address."""
        self._require_open()
        if self.address is None:
            raise errors.CheckoutStepMissing("Give the delivery address first.")
        self.delivery_method = method
        self.state = CheckoutState.DELIVERY
        self._changed()

    def checkout(
        self,
        order_id: str,
        number: str,
        buyer_name: str,
        now: datetime,
        store_name: str = "",
    ) -> Order:
        """The cart becomes an Order awaiting payment (``checked_out``, state ``payment``)."""
        self._require_open()
        if not self._items:
            raise errors.EmptyCart()
        if self.state is not CheckoutState.DELIVERY or self.address is None:
            raise errors.CheckoutStepMissing(
                "Give the address and choose delivery or pickup before paying."
            )
        totals = self.totals()
        if totals.total_minor <= 0:
            raise errors.ZeroSubtotal()
        order = Order.start_single(
            order_id=order_id,
            number=number,
            store_id=self.store.store_id,
            store_name=store_name,
            currency=self.currency,
            buyer_id=self.user_id,
            buyer_name=buyer_name,
            lines=[
                OrderLine(
                    product_id=item.product_id,
                    name=item.name,
                    options=item.options,
                    unit_price_minor=item.unit_price_minor,
                    quantity=item.quantity,
                    line_total_minor=item.line_total_minor,
                    user_id=self.user_id,
                )
                for item in self._items.values()
            ],
            totals=totals,
            delivery_address=self.address,
            now=now,
        )
        self.status = ShopCartStatus.CHECKED_OUT
        self.state = CheckoutState.PAYMENT
        self.order_id = order_id
        self._changed()
        return order

    # --- merging a guest's cart -----------------------------------------------------------

    def absorb(
        self,
        guest_cart: ShopCart,
        available: Mapping[str, int | None],
        new_item_ids: Iterable[str],
    ) -> list[str]:
        """Move the guest's items in: the same product and options add to that line, within
        the stock ``available`` per product (``None``: unlimited) and ``MAX_QUANTITY``. The
        guest's cart is closed (``merged``). The products that didn't fit in full."""
        self._require_open()
        guest_cart._require_open()
        if guest_cart.store.store_id != self.store.store_id:
            raise ValueError("carts of different stores are not merged")
        ids = iter(new_item_ids)
        short: list[str] = []
        for item in guest_cart.items.values():
            same = next(
                (
                    mine
                    for mine in self._items.values()
                    if mine.product_id == item.product_id and mine.options == item.options
                ),
                None,
            )
            have = sum(i.quantity for i in self._items.values() if i.product_id == item.product_id)
            stock = available.get(item.product_id)
            room = MAX_QUANTITY - (same.quantity if same else 0)
            if stock is not None:
                room = min(room, stock - have)
            moved = max(0, min(item.quantity, room))
            if moved < item.quantity:
                short.append(item.product_id)
            if moved == 0:
                continue
            if same is not None:
                self._items[same.item_id] = replace(same, quantity=same.quantity + moved)
            else:
                line = replace(item, item_id=next(ids), user_id=self.user_id, quantity=moved)
                self._items[line.item_id] = line
        guest_cart.status = ShopCartStatus.MERGED
        guest_cart._changed()
        self._changed()
        return short
