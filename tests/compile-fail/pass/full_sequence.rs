// Control: the full legal VFIO sequence must compile. Open the container,
// attach the group (VFIO_GROUP_SET_CONTAINER), select type1v2
// (VFIO_SET_IOMMU), query the IOMMU (VFIO_IOMMU_GET_INFO), map a buffer
// (VFIO_IOMMU_MAP_DMA), unmap it by dropping the guard, free the buffer,
// release the groups, then attach them again and pick another model.
use typed_vfio::{
    Container, DmaAccess, DmaBuffer, Group, IommuModel, Type1, Type1v2, page_size,
};

pub fn full_sequence() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?;
    assert!(container.supports::<Type1v2>()?);
    let group = Group::open(26)?;
    assert!(group.status()?.viable);
    let container = container.attach(group)?;
    let mut container = container.set_iommu::<Type1v2>()?;
    let info = container.iommu_info()?;
    let iova = info.iova_ranges.first().map_or(0, |r| r.start);

    let buffer = DmaBuffer::new(4 * page_size())?;
    buffer.write(0, b"descriptor")?;
    {
        let mapping = container.map(&buffer, iova, DmaAccess::ReadWrite)?;
        assert_eq!(mapping.size(), buffer.len() as u64);
        let second = DmaBuffer::new(page_size())?;
        let tail = container.map(&second, iova + mapping.size(), DmaAccess::DeviceWrites)?;
        tail.unmap()?;
        drop(mapping);
        drop(second);
    }
    assert!(!buffer.is_mapped());
    drop(buffer);
    container.unmap_all()?;

    let (container, groups) = container.release_groups()?;
    let mut groups = groups.into_iter();
    let first = groups.next().ok_or("no group")?;
    let mut container = container.attach(first)?;
    for more in groups {
        container.attach_more(more).map_err(|(_, e)| e)?;
    }
    let container = container.set_iommu::<Type1>()?;
    println!("{} = {}", Type1::NAME, Type1::ID);
    let device = container.open_device("0000:01:00.0")?;
    device.reset()?;
    drop(device);
    drop(container);
    Ok(())
}
