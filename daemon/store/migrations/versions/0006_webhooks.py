"""API tokens, webhook subscriptions and their outbox of deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import eowatch.daemon.store.tables

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = eowatch.daemon.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('scope', sa.String(), nullable=False),
        sa.Column('token_hash', sa.String(), nullable=False),
        sa.Column('created_at', TIME(timezone=True), nullable=False),
        sa.Column('revoked_at', TIME(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('token_hash'))
    op.create_table(
        'subscriptions',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('url', sa.String(), nullable=False),
        sa.Column('kinds', sa.Text(), nullable=False),
        sa.Column('areas', sa.Text(), nullable=True),
        sa.Column('polygon', sa.Text(), nullable=True),
        sa.Column('classes', sa.Text(), nullable=True),
        sa.Column('min_probability', sa.Float(), nullable=True),
        sa.Column('feeds', sa.Text(), nullable=True),
        sa.Column('description', sa.String(), nullable=False),
        sa.Column('secrets', sa.Text(), nullable=False),
        sa.Column('created_at', TIME(timezone=True), nullable=False),
        sa.Column('updated_at', TIME(timezone=True), nullable=False),
        sa.Column('disabled_at', TIME(timezone=True), nullable=True),
        sa.Column('disabled_reason', sa.String(), nullable=True),
        sa.Column('failing_since', TIME(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    op.create_table(
        'deliveries',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('subscription_id', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('event_id', sa.String(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', TIME(timezone=True), nullable=True),
        sa.Column('lease_owner', sa.String(), nullable=True),
        sa.Column('lease_until', TIME(timezone=True), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(), nullable=True),
        sa.Column('created_at', TIME(timezone=True), nullable=False),
        sa.Column('updated_at', TIME(timezone=True), nullable=False),
        sa.Column('delivered_at', TIME(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_deliveries_due', 'deliveries', ['status', 'next_attempt_at'])
    op.create_index('ix_deliveries_subscription', 'deliveries',
                    ['subscription_id', 'created_at'])
    op.create_table(
        'delivery_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.String(), nullable=False),
        sa.Column('at', TIME(timezone=True), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.String(), nullable=True),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_delivery_attempts_delivery_id', 'delivery_attempts', ['delivery_id'])


def downgrade() -> None:
    op.drop_index('ix_delivery_attempts_delivery_id', table_name='delivery_attempts')
    op.drop_table('delivery_attempts')
    op.drop_index('ix_deliveries_subscription', table_name='deliveries')
    op.drop_index('ix_deliveries_due', table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_table('subscriptions')
    op.drop_table('api_tokens')
