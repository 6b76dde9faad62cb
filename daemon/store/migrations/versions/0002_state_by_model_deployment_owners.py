"""state keyed by model, deployment invariants, shard owners with epochs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 15:40:00

Rows of parcel_state move to target_state under the model '' (written before state was keyed by
model): the first daemon to start on them adopts them for its model.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import eowatch.daemon.store.tables

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('target_state',
    sa.Column('model', sa.String(), nullable=False),
    sa.Column('target_id', sa.String(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('acquisition_id', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('model', 'target_id')
    )
    op.create_index('ix_target_state_model_shard', 'target_state', ['model', 'shard'])
    op.execute("INSERT INTO target_state (model, target_id, shard, data, acquisition_id) "
               "SELECT '', parcel_id, shard, data, acquisition_id FROM parcel_state")
    op.drop_index('ix_parcel_state_shard', table_name='parcel_state')
    op.drop_table('parcel_state')
    op.create_table('deployment',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.Column('updated_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('shard_owners',
    sa.Column('group_id', sa.String(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('updated_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('group_id', 'shard')
    )


def downgrade() -> None:
    op.drop_table('shard_owners')
    op.drop_table('deployment')
    op.create_table('parcel_state',
    sa.Column('parcel_id', sa.String(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('acquisition_id', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('parcel_id')
    )
    op.create_index('ix_parcel_state_shard', 'parcel_state', ['shard'])
    op.execute("INSERT INTO parcel_state (parcel_id, shard, data, acquisition_id) "
               "SELECT target_id, shard, data, acquisition_id FROM target_state WHERE model = ''")
    op.drop_index('ix_target_state_model_shard', table_name='target_state')
    op.drop_table('target_state')
