"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 03:29:29.231330
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import eowatch.daemon.store.tables


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('alert_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('area_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('alert_id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_area_id'), ['area_id'], unique=False)

    op.create_table('areas',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('bus_messages',
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.LargeBinary(), nullable=True),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('topic', 'partition', 'offset')
    )
    op.create_table('consumer_offsets',
    sa.Column('group_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('group_id', 'topic', 'partition')
    )
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('topic', 'partition', 'offset', 'reason')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_reason'), ['reason'], unique=False)

    op.create_table('decisions',
    sa.Column('decision_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('parcel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('season', sa.Integer(), nullable=False),
    sa.Column('feed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('crop', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('probabilities', sa.Text(), nullable=False),
    sa.Column('p_stop', sa.Float(), nullable=False),
    sa.Column('day_of_season', sa.Float(), nullable=False),
    sa.Column('acquired_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('acquisition_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('observations', sa.Integer(), nullable=False),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('decision_id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_acquired_at'), ['acquired_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_decisions_crop'), ['crop'], unique=False)
        batch_op.create_index(batch_op.f('ix_decisions_feed'), ['feed'], unique=False)
        batch_op.create_index(batch_op.f('ix_decisions_parcel_id'), ['parcel_id'], unique=False)

    op.create_table('feed_cursors',
    sa.Column('feed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=False),
    sa.Column('updated_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('feed')
    )
    op.create_table('parcel_state',
    sa.Column('parcel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('acquisition_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('parcel_id')
    )
    with op.batch_alter_table('parcel_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parcel_state_shard'), ['shard'], unique=False)

    op.create_table('parcels',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('season_start', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', eowatch.daemon.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('parcels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parcels_shard'), ['shard'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('parcels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_parcels_shard'))

    op.drop_table('parcels')
    with op.batch_alter_table('parcel_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_parcel_state_shard'))

    op.drop_table('parcel_state')
    op.drop_table('feed_cursors')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_parcel_id'))
        batch_op.drop_index(batch_op.f('ix_decisions_feed'))
        batch_op.drop_index(batch_op.f('ix_decisions_crop'))
        batch_op.drop_index(batch_op.f('ix_decisions_acquired_at'))

    op.drop_table('decisions')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_reason'))

    op.drop_table('dead_letters')
    op.drop_table('consumer_offsets')
    op.drop_table('bus_messages')
    op.drop_table('areas')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_area_id'))

    op.drop_table('alerts')
